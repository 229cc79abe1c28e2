import dataclasses
import json
import platform
from importlib import metadata
from pathlib import Path

import jax
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ._base import AbstractPreset, Results
from ._pieces import remove_pieces


def machine_description() -> dict[str, str]:
    """The machine a result came from: platform, processor count and JAX devices."""
    import os

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": str(os.cpu_count()),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxflow": metadata.version("jaxflow"),
        "backend": jax.default_backend(),
        "devices": ", ".join(d.device_kind for d in jax.devices()),
        "x64": str(jax.config.read("jax_enable_x64")),
    }


def jsonable(value):
    if isinstance(value, tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def config_record(preset: AbstractPreset) -> dict:
    """The full configuration of a run, with the machine, as stored in `config.json`."""
    params = {k: jsonable(v) for k, v in dataclasses.asdict(preset).items()}
    return {"preset": preset.name, "params": params, "machine": machine_description()}


def preset_from_record(record: dict) -> AbstractPreset:
    """The preset a `config.json` record describes: the inverse of [`config_record`][],
    so that a results folder can be run again with the same parameters.

    **Raises:** `KeyError` for an unknown preset name; `ConfigError` for a parameter the
    preset does not have.
    """
    from ._config import ConfigError
    from ._registry import get_preset

    cls = get_preset(record["preset"])
    fields = {f.name: f for f in dataclasses.fields(cls)}
    params = record.get("params", {})
    unknown = sorted(set(params) - set(fields))
    if unknown:
        raise ConfigError(
            f"config for {cls.name} has unknown parameters {', '.join(unknown)}; "
            f"valid keys: {', '.join(fields)}."
        )
    # JSON has no tuples: restore them for the fields that hold one.
    restore = lambda v: tuple(restore(x) for x in v) if isinstance(v, list) else v
    try:
        return cls(**{k: restore(v) for k, v in params.items()})
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{cls.name}: {e}") from None


def read_config(path: Path) -> AbstractPreset:
    """The preset stored in a results folder's `config.json` (or at `path` itself)."""
    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    return preset_from_record(json.loads(path.read_text()))


def write_results(preset: AbstractPreset, results: Results, out: Path) -> list[Path]:
    """Write `config.json`, `results.parquet`, `results.csv`, figures and arrays to `out`,
    then drop the run's finished pieces ([`jaxflow.experiments.Pieces`][]): the results
    hold them now."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "config.json"]
    written[0].write_text(json.dumps(config_record(preset), indent=2))
    table = pa.Table.from_pylist([{k: jsonable(v) for k, v in r.items()} for r in results.rows])
    pq.write_table(table, out / "results.parquet")
    pacsv.write_csv(table, out / "results.csv")
    written += [out / "results.parquet", out / "results.csv"]
    for stem, figure in results.figures.items():
        path = out / f"{stem}.png"
        figure.savefig(path, dpi=120, bbox_inches="tight")
        written.append(path)
    if results.arrays:
        np.savez_compressed(
            out / "arrays.npz", **{k: np.asarray(v) for k, v in results.arrays.items()}
        )
        written.append(out / "arrays.npz")
    remove_pieces(out, preset)
    return written


def format_table(rows: list[dict], columns: tuple[str, ...] = ()) -> str:
    """A plain-text table of `rows` for the terminal."""
    if not rows:
        return "(no rows)"
    columns = columns or tuple(rows[0])

    def cell(v):
        if v is None:
            return "-"
        if isinstance(v, float | np.floating):
            text = f"{v:.4g}"
            # Keep 0.99996 from printing as 1 (an interval's end, say).
            return f"{v:.7g}" if float(text) in (0.0, 1.0) and v != float(text) else text
        return str(v)

    body = [[cell(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(b[i]) for b in body)) for i, c in enumerate(columns)]
    line = lambda cells: "  ".join(s.rjust(w) for s, w in zip(cells, widths))
    return "\n".join([line(columns), line(["-" * w for w in widths])] + [line(b) for b in body])

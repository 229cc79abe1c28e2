"""A grid over a preset's parameters: one Parquet dataset, one file per finished grid
point, resumable, and split deterministically across independent jobs."""

import dataclasses
import hashlib
import itertools
import json
import shutil
import tomllib
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from ._params import ConfigError, convert, unwrap_optional
from ._preset import AbstractPreset
from ._records import jsonable, preset_from_params
from ._runner import check_fits, compute_cells, enable_x64, to_table
from ._store import check_out, sibling, write_atomic


@dataclasses.dataclass(frozen=True)
class Sweep:
    """The grid points of a sweep: `base` with every combination of `grid`'s values.

    **Fields:**

    - `base`: the preset the grid varies (its other parameters stay as they are).
    - `grid`: for each varied parameter, its values, in the order the points run (the
      last parameter varies fastest).
    """

    base: AbstractPreset
    grid: tuple[tuple[str, tuple[Any, ...]], ...]

    def points(self) -> list[AbstractPreset]:
        names = [name for name, _ in self.grid]
        presets = []
        for values in itertools.product(*(v for _, v in self.grid)):
            changes = dict(zip(names, values))
            try:
                presets.append(dataclasses.replace(self.base, **changes))
            except ConfigError as e:
                shown = ", ".join(f"{k}={v}" for k, v in changes.items())
                raise ConfigError(f"--grid point {shown}: {e}") from None
        return presets

    def record(self) -> dict:
        return {
            "preset": self.base.name,
            "base": {k: jsonable(v) for k, v in dataclasses.asdict(self.base).items()},
            "grid": [[name, jsonable(list(values))] for name, values in self.grid],
        }


def parse_grid(base: AbstractPreset, assignments: Sequence[str], spec: Path | None) -> Sweep:
    """The sweep of `--grid key=v1,v2,...` assignments and/or a TOML `spec` file with a
    `[grid]` table of lists (and optionally a `[set]` table of fixed parameters).

    A tuple-valued parameter takes its grid values separated by `;` (`ns=10,20;30,40`)
    on the command line, or as a list of lists in TOML.

    **Raises:** `ConfigError`, one line, for an unknown key, a value that does not parse
    or breaks a rule, a key given twice, or an empty grid.
    """
    hints = typing.get_type_hints(type(base))
    fields = [f.name for f in dataclasses.fields(base)]
    grid: dict[str, tuple[Any, ...]] = {}

    def add(key: str, values: list[Any], source: str) -> None:
        if key not in fields:
            raise ConfigError(
                f"{source} {key}: {base.name} has no parameter {key!r}; valid keys: "
                f"{', '.join(fields)}."
            )
        if key in grid:
            raise ConfigError(f"{source} {key}: given twice; list all its values once.")
        if not values:
            raise ConfigError(f"{source} {key}: give at least one value.")
        grid[key] = tuple(convert(v, hints[key], key) for v in values)

    if spec is not None:
        try:
            document = tomllib.loads(Path(spec).read_text())
        except OSError as e:
            raise ConfigError(f"--spec {spec}: cannot read it: {e.strerror}.") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"--spec {spec}: not TOML ({e}).") from None
        unknown = sorted(set(document) - {"grid", "set"})
        if unknown or not isinstance(document.get("grid", {}), dict):
            raise ConfigError(
                f"--spec {spec}: expected a [grid] table and an optional [set] table."
            )
        if "set" in document:
            fixed = dataclasses.asdict(base) | document["set"]
            base = preset_from_params(type(base), fixed, f"--spec {spec} [set]")
        for key, values in document.get("grid", {}).items():
            add(key, values if isinstance(values, list) else [values], f"--spec {spec}:")
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        if not sep:
            raise ConfigError(f"--grid {assignment!r}: expected key=v1,v2,...")
        kind = hints.get(key)
        tuple_valued = kind is not None and typing.get_origin(unwrap_optional(kind)[0]) is tuple
        values = text.split(";") if tuple_valued else text.split(",")
        add(key, [v.strip() for v in values if v.strip()], "--grid")
    if not grid:
        raise ConfigError("jaxflow sweep: give at least one --grid key=v1,v2,... or a --spec file.")
    return Sweep(base, tuple(grid.items()))


def point_hash(preset: AbstractPreset) -> str:
    """The hash of a grid point's full configuration: its file name and a column."""
    record = {"preset": preset.name, "params": jsonable(dataclasses.asdict(preset))}
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]


def parse_shard(text: str | None) -> tuple[int, int]:
    """`i/k` as (i, k) with 1 <= i <= k; `None` is the whole sweep, 1/1."""
    if text is None:
        return 1, 1
    index, sep, count = text.partition("/")
    if not (sep and index.isdigit() and count.isdigit() and 1 <= int(index) <= int(count)):
        raise ConfigError(f"--shard {text}: expected i/k with 1 <= i <= k, e.g. --shard 2/4.")
    return int(index), int(count)


def shard_points(points: list[AbstractPreset], shard: tuple[int, int]) -> list[AbstractPreset]:
    """The points of shard `i/k`: every k-th point from the i-th, so the shards are
    disjoint, cover the grid, and are the same in every job."""
    index, count = shard
    return points[index - 1 :: count]


def _config_columns(preset: AbstractPreset, rows: int) -> dict[str, pa.Array]:
    columns = {"config_hash": pa.array([point_hash(preset)] * rows, pa.string())}
    for key, value in dataclasses.asdict(preset).items():
        columns[f"param_{key}"] = pa.array([jsonable(value)] * rows)
    return columns


def _claim(out: Path, sweep: Sweep) -> None:
    """Record the sweep in `out/sweep.json`, refusing a folder that holds another one:
    a sweep folder is never a mix of two sweeps."""
    check_out(out, marker="sweep.json")
    out.mkdir(parents=True, exist_ok=True)
    path = out / "sweep.json"
    record = sweep.record()
    if path.exists():
        try:
            stored = json.loads(path.read_text())
        except ValueError:
            stored = None
        if stored != json.loads(json.dumps(record)):
            raise ConfigError(
                f"--out {out}: holds another sweep (other preset, parameters or grid); "
                "choose another --out."
            )
        return
    write_atomic(path, lambda file: file.write(json.dumps(record, indent=2).encode()))


def status(out: Path, sweep: Sweep, shard: tuple[int, int] = (1, 1)) -> tuple[int, int]:
    """How many of the shard's grid points are finished and how many are left."""
    points = shard_points(sweep.points(), shard)
    done = sum((Path(out) / "table" / f"{point_hash(p)}.parquet").exists() for p in points)
    return done, len(points) - done


def run_sweep(
    sweep: Sweep, out: Path, *, shard: tuple[int, int] = (1, 1), progress: bool = True
) -> tuple[int, int]:
    """Run the shard's grid points not finished yet, each point's rows (with the config
    columns `param_*` and `config_hash`) written atomically to
    `out/table/<config_hash>.parquet` as it finishes, so that a killed sweep rerun
    computes only what is missing, and no point is lost or doubled.

    Several jobs may run different shards into one `out` at once. Read the dataset with
    `pyarrow.parquet.read_table(out / "table")`.

    A sweep runs in one process: its points are independent runs, so independent jobs,
    one per shard, need no communication (a run of several processes through
    [`jaxflow.initialize_distributed`][] is for one large point: [`jaxflow.experiments.run`][]).

    **Returns:** the numbers of points computed and skipped (already finished).

    **Raises:** `ConfigError`, one line, for a point that would not fit, a folder that
    holds another sweep, or a call from a run of several processes.
    """
    out = Path(out)
    points = shard_points(sweep.points(), shard)  # validates every point first
    if jax.process_count() > 1:
        raise ConfigError(
            "run_sweep: runs in one process; give each job a shard of the grid instead "
            "(--shard i/k), or spread one point over the processes with run."
        )
    for preset in points:
        check_fits(preset, out)
    _claim(out, sweep)
    enable_x64()
    table_dir = out / "table"
    table_dir.mkdir(exist_ok=True)
    computed = skipped = 0
    for preset in tqdm(
        points, desc=f"sweep {shard[0]}/{shard[1]}", unit="point", disable=not progress
    ):
        path = table_dir / f"{point_hash(preset)}.parquet"
        if path.exists():
            skipped += 1
            continue
        work = out / "work" / point_hash(preset)
        outputs, _, pieces = compute_cells(preset, work, progress=False)
        table = to_table(preset, preset.tabulate(outputs).rows)
        for name, column in _config_columns(preset, table.num_rows).items():
            table = table.append_column(name, column)
        write_atomic(path, lambda file: pq.write_table(table, file))
        pieces.remove()
        shutil.rmtree(sibling(work, "pieces"), ignore_errors=True)
        computed += 1
    return computed, skipped

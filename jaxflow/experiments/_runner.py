"""The one runner every preset goes through: the cell loop with its progress bar and
resumable pieces, the table and arrays, the figures redrawn from disk, and a results
folder replaced as a whole."""

import contextlib
import dataclasses
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

import jax
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from .._distributed import decided_by_process_0, is_process_0
from ._params import ConfigError
from ._pieces import Pieces
from ._preset import AbstractPreset
from ._records import config_record, jsonable, read_config
from ._store import check_out, clear_leftovers, locked, publish, staging, write_atomic


_GIB = 2**30


@dataclasses.dataclass(frozen=True)
class Run:
    """A finished run: its folder, table, saved arrays, the figure files and which cells
    an earlier run had finished."""

    out: Path
    table: pa.Table
    arrays: Mapping[str, np.ndarray]
    figures: tuple[Path, ...]
    resumed: tuple[str, ...]


def enable_x64() -> None:
    """Double precision for every run: exact answers need it, and each preset still
    computes in the dtype it is given. The one place the engine switches it on."""
    jax.config.update("jax_enable_x64", True)


def _memory_available() -> float:
    try:
        with open("/proc/meminfo") as file:
            for line in file:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def check_fits(preset: AbstractPreset, out: Path) -> None:
    """Refuse, before any work, a configuration whose estimated memory or disk exceeds
    what this machine has free, naming the parameters that set the size."""
    need = preset.footprint()
    names = ", ".join(need.set_by)
    memory = _memory_available()
    if need.memory > memory:
        raise ConfigError(
            f"{names}: the run needs about {need.memory / _GIB:.3g} GiB of memory and "
            f"{memory / _GIB:.3g} GiB is free; lower {names}."
        )
    existing = Path(out).resolve()
    while not existing.exists():
        existing = existing.parent
    disk = shutil.disk_usage(existing).free
    if need.disk > disk:
        raise ConfigError(
            f"{names}: the run writes about {need.disk / _GIB:.3g} GiB and {disk / _GIB:.3g} "
            f"GiB is free on {existing}; lower {names} or choose another --out."
        )


def compute_cells(
    preset: AbstractPreset, out: Path, *, progress: bool = True
) -> tuple[dict, tuple[str, ...], Pieces]:
    """Every cell's arrays: read back where an earlier run of the same configuration
    finished the cell, else computed and written at once. Returns the outputs by cell,
    the names of the cells read back, and the pieces (to remove once published).

    In a run of several processes (see [`jaxflow.initialize_distributed`][]) every
    process computes the same cells in the same order, each computation splitting its
    batch over every process's devices; process 0 alone reads and writes the pieces,
    decides which cells are finished, shows progress and receives the outputs (the
    other processes get an empty dict).
    """
    leader = is_process_0()
    pieces = Pieces(out, preset)
    cells = list(preset.cells())
    names = [preset.cell_name(c) for c in cells]
    if len(set(names)) != len(names):
        raise RuntimeError(f"{preset.name}: two cells share a name; cell_name must be unique.")
    stored = {}

    def finished() -> list[str]:
        stored.update((n, arrays) for n in names if (arrays := pieces.load(n)) is not None)
        return list(stored)

    done = set(decided_by_process_0(finished))
    progress = progress and leader
    outputs, context = {}, None
    bar = tqdm(total=len(cells), desc=preset.name, unit="cell", disable=not progress)
    with bar:
        for cell, name in zip(cells, names):
            arrays = stored.get(name)
            if name not in done:
                if context is None:
                    context = preset.prepare(progress=progress)
                arrays = {k: np.asarray(v) for k, v in preset.compute(cell, context).items()}
                if leader:
                    pieces.save(name, arrays)
            if leader:
                outputs[cell] = arrays
            bar.set_postfix_str(name, refresh=False)
            bar.update()
    return outputs, tuple(n for n in names if n in done), pieces


def to_table(preset: AbstractPreset, rows: list[dict]) -> pa.Table:
    """The rows as a table with the preset's schema: a row with a missing or unknown
    column is a bug of the preset, reported with the column's name."""
    columns = set(preset.schema.names)
    for row in rows:
        if set(row) != columns:
            missing, extra = sorted(columns - set(row)), sorted(set(row) - columns)
            raise RuntimeError(
                f"{preset.name}: row columns differ: missing {missing}, extra {extra}."
            )
    return pa.Table.from_pylist(
        [{k: jsonable(v) for k, v in r.items()} for r in rows], schema=preset.schema
    )


def _write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    write_atomic(path, lambda file: np.savez_compressed(file, **arrays))


def read_arrays(out: Path) -> dict[str, np.ndarray]:
    path = Path(out) / "arrays.npz"
    if not path.exists():
        return {}
    with np.load(path, allow_pickle=False) as stored:
        return {k: stored[k] for k in stored.files}


def draw(preset: AbstractPreset, folder: Path) -> tuple[Path, ...]:
    """Draw the figures of `preset` from the table and arrays written in `folder`, and
    write each PNG atomically beside them."""
    table = pq.read_table(Path(folder) / "results.parquet")
    written = []
    for stem, figure in preset.figures(table, read_arrays(folder)).items():
        path = Path(folder) / f"{stem}.png"
        write_atomic(
            path, lambda file: figure.savefig(file, format="png", dpi=120, bbox_inches="tight")
        )
        written.append(path)
    return tuple(written)


def run(preset: AbstractPreset, out: Path, *, progress: bool = True) -> Run | None:
    """Run `preset` into the results folder `out`.

    Checks the folder and the footprint first, then holds the folder's lock while it
    computes every cell (resuming an earlier run's finished cells), writes
    `config.json`, `results.parquet`, `results.csv` and `arrays.npz` into a staging
    folder beside `out`, draws the figures from those files, and swaps the staging
    folder into the place of `out`: a reader sees the old results or the new, never a
    mix. The finished cells are then dropped.

    In a run of several processes (see [`jaxflow.initialize_distributed`][]) every
    process calls `run` with the same preset; they compute every cell together, and
    process 0 alone checks, locks and writes `out` (which must be on a file system it
    can write), shows progress, and tabulates and draws (so a preset's `tabulate` and
    `figures` must not call a computation split across processes). The table is the one
    a single process writes.

    **Returns:** the finished [`jaxflow.experiments.Run`][]; `None` in the processes
    other than process 0.

    **Raises:** `ConfigError` (one line) for a folder that cannot be written, a run that
    would not fit, or another run holding the folder; in a run of several processes,
    every process raises process 0's refusal.
    """
    out = Path(out)
    enable_x64()
    with contextlib.ExitStack() as stack:

        def claim() -> None:
            check_out(out)
            check_fits(preset, out)
            stack.enter_context(locked(out))
            clear_leftovers(out)

        decided_by_process_0(claim, (ConfigError,))
        outputs, resumed, pieces = compute_cells(preset, out, progress=progress)
        if not is_process_0():
            return None
        tabulated = preset.tabulate(outputs)
        table = to_table(preset, tabulated.rows)
        arrays = {k: np.asarray(v) for k, v in tabulated.arrays.items()}
        folder = staging(out)
        try:
            write_atomic(
                folder / "config.json",
                lambda file: file.write(json.dumps(config_record(preset), indent=2).encode()),
            )
            write_atomic(folder / "results.parquet", lambda file: pq.write_table(table, file))
            write_atomic(folder / "results.csv", lambda file: pacsv.write_csv(table, file))
            if arrays:
                _write_npz(folder / "arrays.npz", arrays)
            figures = draw(preset, folder)
            publish(folder, out)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        pieces.remove()
    return Run(out, table, arrays, tuple(out / f.name for f in figures), resumed)


def redraw(out: Path, cls: type[AbstractPreset] | None = None) -> tuple[Path, ...]:
    """Redraw every figure of the results folder `out` from its files, computing nothing
    with JAX (`jaxflow plot`). `cls` names the preset class for a preset outside the
    catalogue."""
    out = Path(out)
    if not (out / "results.parquet").exists():
        raise ConfigError(f"{out}: no results.parquet here; give a jaxflow results folder.")
    preset = read_config(out, cls)
    with locked(out):
        return draw(preset, out)

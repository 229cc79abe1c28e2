"""The `jaxflow` command: list the presets, run one into a results folder, redraw a
folder's figures, and sweep a grid of parameters.

    jaxflow list [PRESET]
    jaxflow run PRESET [--set key=value ...] [--config DIR] [--quick] [--out DIR]
    jaxflow plot DIR
    jaxflow sweep PRESET --grid key=v1,v2 ... [--spec FILE.toml] --out DIR [--shard i/k] [--status]

A user's mistake (an unknown preset or parameter, a value that does not parse or breaks
its rule, a folder that cannot be written, a run too large for the machine) is refused
in one line, before any work starts, with exit status 2.
"""

import argparse
import dataclasses
import math
import os
import sys
import time
from pathlib import Path


def _presets_epilog() -> str:
    from .experiments import describe, PRESETS

    blocks = [f"{name}: {cls.summary}\n{describe(cls)}" for name, cls in sorted(PRESETS.items())]
    return "presets and their parameters (set with --set key=value):\n\n" + "\n\n".join(blocks)


def _preset_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("preset", help="preset name (see `jaxflow list`)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a preset parameter; repeatable",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="PATH",
        help="start from the parameters in a results folder's config.json (or the folder, "
        "or any JSON file of that form); --quick and --set apply on top",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a small configuration of the same study that finishes in seconds",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument(
        "--compilation-cache",
        type=Path,
        default=None,
        metavar="DIR",
        help="keep compiled programs in DIR (JAX's persistent compilation cache), so that "
        "a later run of the same shapes skips compiling",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxflow",
        description="Simulate memorization in diffusion models: exact denoisers, "
        "probability flows over many noises, endpoint statistics.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list", help="list the presets, or one preset's parameters")
    listing.add_argument("name", nargs="?", metavar="PRESET", help="show this preset's parameters")

    run = sub.add_parser(
        "run",
        help="run a preset and write its results folder",
        epilog=_presets_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _preset_options(run)
    run.add_argument(
        "--out", type=Path, default=None, help="results folder (default: results/PRESET)"
    )

    plot = sub.add_parser("plot", help="redraw a results folder's figures from its files")
    plot.add_argument("folder", type=Path, metavar="DIR", help="a results folder of `jaxflow run`")

    sweep = sub.add_parser(
        "sweep",
        help="run a preset over a grid of parameters into one Parquet dataset",
        description="Run PRESET at every combination of the --grid values. Each finished "
        "grid point's rows (with param_* columns and a config_hash) are written to "
        "OUT/table/<config_hash>.parquet; rerunning skips finished points; --shard i/k "
        "runs every k-th point from the i-th, so k independent jobs share the grid. Read "
        "the dataset with pyarrow.parquet.read_table('OUT/table').",
    )
    _preset_options(sweep)
    sweep.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2,...",
        help="a parameter and its values; repeatable (the grid is their product). A tuple "
        "parameter separates its values with ';': ns=10,20;30,40",
    )
    sweep.add_argument(
        "--spec",
        type=Path,
        default=None,
        metavar="FILE",
        help="a TOML file with a [grid] table of lists (and an optional [set] table)",
    )
    sweep.add_argument("--out", type=Path, required=True, help="the sweep's folder")
    sweep.add_argument("--shard", default=None, metavar="I/K", help="run only shard I of K")
    sweep.add_argument(
        "--status", action="store_true", help="count the finished and remaining points; run nothing"
    )
    return parser


class _Usage(Exception):
    """A user's mistake, reported in one line."""


def _list(name: str | None) -> int:
    from .experiments import describe, get_preset, PRESETS

    if name is not None:
        try:
            cls = get_preset(name)
        except KeyError as e:
            raise _Usage(e.args[0]) from None
        print(f"{name}: {cls.summary}\n\nparameters (set with --set key=value):\n{describe(cls)}")
        return 0
    width = max(map(len, PRESETS))
    for name, cls in sorted(PRESETS.items()):
        print(f"{name.ljust(width)}  {cls.summary}")
    print("\nRun `jaxflow list PRESET` for one preset's parameters, `jaxflow run --help` for all.")
    return 0


def _compilation_cache(folder: Path | None) -> None:
    if folder is None:
        return
    import jax

    from .experiments import ConfigError

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(
            f"--compilation-cache {folder}: cannot create it: {e.strerror}."
        ) from None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    # Cache every program: the small ones add up across a sweep's points.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def _preset(args):
    """The preset the command line describes: the name, then --config, --quick, --set."""
    from .experiments import ConfigError, get_preset, read_config

    try:
        cls = get_preset(args.preset)
    except KeyError as e:
        raise _Usage(e.args[0]) from None
    preset = cls()
    if args.config is not None:
        preset = read_config(args.config)
        if preset.name != cls.name:
            raise ConfigError(
                f"--config {args.config}: holds preset {preset.name}, not {cls.name}."
            )
    if args.quick:
        preset = preset.quick()
    return _apply(preset, args.overrides)


def _apply(preset, assignments: list[str]):
    """`preset` with `--set key=value` assignments, each parsed by its field's type."""
    import typing

    from .experiments import ConfigError
    from .experiments._params import convert

    fields = [f.name for f in dataclasses.fields(preset)]
    hints = typing.get_type_hints(type(preset))
    changes = {}
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        if not sep:
            raise ConfigError(f"--set {assignment!r}: expected key=value.")
        if key not in fields:
            raise ConfigError(
                f"--set {key}: {preset.name} has no parameter {key!r}; valid keys: "
                f"{', '.join(fields)}."
            )
        try:
            changes[key] = convert(text, hints[key], key)
        except ConfigError as e:
            raise ConfigError(f"--set {e}") from None
    try:
        return dataclasses.replace(preset, **changes)
    except ConfigError as e:
        raise ConfigError(f"--set {e}") from None


def format_table(table, columns: tuple[str, ...] = ()) -> str:
    """A plain-text view of a `pyarrow.Table` for the terminal."""
    rows = table.to_pylist()
    if not rows:
        return "(no rows)"
    columns = columns or tuple(table.column_names)

    def cell(v):
        if v is None:
            return "-"
        if isinstance(v, float):
            if not math.isfinite(v):
                return str(v)
            text = f"{v:.4g}"
            # Keep 0.99996 from printing as 1 (an interval's end, say).
            return f"{v:.7g}" if float(text) in (0.0, 1.0) and v != float(text) else text
        return str(v)

    body = [[cell(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(b[i]) for b in body)) for i, c in enumerate(columns)]
    line = lambda cells: "  ".join(s.rjust(w) for s, w in zip(cells, widths))
    return "\n".join([line(columns), line(["-" * w for w in widths])] + [line(b) for b in body])


def _run(args) -> int:
    from .experiments import run

    preset = _preset(args)
    _compilation_cache(args.compilation_cache)
    out = args.out or Path("results") / preset.name
    start = time.perf_counter()
    result = run(preset, out, progress=not args.no_progress)
    print(format_table(result.table, preset.summary_columns))
    if result.resumed:
        print(f"\nresumed {len(result.resumed)} finished cell(s) of an earlier run")
    print(f"\n{preset.name} finished in {time.perf_counter() - start:.1f} s; wrote {out}/:")
    for path in sorted(out.iterdir()):
        print(f"  {path.name}")
    return 0


def _plot(args) -> int:
    from .experiments import redraw

    for path in redraw(args.folder):
        print(path)
    return 0


def _sweep(args) -> int:
    from .experiments import parse_grid, parse_shard, run_sweep, status

    preset = _preset(args)
    shard = parse_shard(args.shard)
    sweep = parse_grid(preset, args.grid, args.spec)
    _compilation_cache(args.compilation_cache)
    if args.status:
        done, left = status(args.out, sweep, shard)
        where = f"{preset.name} sweep in {args.out} (shard {shard[0]}/{shard[1]})"
        print(f"{where}: {done} done, {left} left")
        return 0
    start = time.perf_counter()
    computed, skipped = run_sweep(sweep, args.out, shard=shard, progress=not args.no_progress)
    print(
        f"{preset.name} sweep (shard {shard[0]}/{shard[1]}): {computed} point(s) computed, "
        f"{skipped} already finished, in {time.perf_counter() - start:.1f} s; "
        f"table in {args.out / 'table'}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from . import configure_cpu_workarounds
    from .experiments import ConfigError

    # Before JAX starts its backend: XLA reads its flags then.
    configure_cpu_workarounds()
    commands = {"list": _list, "run": _run, "plot": _plot, "sweep": _sweep}
    try:
        if args.command == "list":
            return _list(args.name)
        return commands[args.command](args)
    except (_Usage, ConfigError) as e:
        print(f"jaxflow: error: {e.args[0]}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`jaxflow list | head`): not an error of the run. Point
        # stdout at devnull so that the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""The `jaxflow` command: list the presets, run one into a results folder, redraw a
folder's figures, and sweep a grid of parameters.

    jaxflow list [PRESET]
    jaxflow run PRESET [--set key=value ...] [--config DIR] [--quick] [--out DIR]
                [--distributed | --coordinator HOST:PORT --num-processes N --process-id I]
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
import textwrap
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
    parser.add_argument(
        "--cpu-devices",
        default=None,
        metavar="N",
        help="present the CPU as N devices, each computing its share of the batch (e.g. "
        "the number of cores: the linear-model presets, one repetition at a time per "
        "device, then keep every core busy); same numbers, up to rounding. Default 1",
    )


_DISTRIBUTED_OPTIONS = ("--distributed", "--coordinator", "--num-processes", "--process-id")


def _distributed_options(parser: argparse.ArgumentParser, *, shown: bool = True) -> None:
    """The options of a run across several processes or hosts; `shown=False` accepts them
    without listing them (for a command that refuses them in words)."""
    what = lambda text: text if shown else argparse.SUPPRESS
    about = textwrap.fill(
        "One run across several processes (jax.distributed): start the same command in "
        "every process (e.g. `srun jaxflow run PRESET --distributed` on SLURM, one task per "
        "GPU); "
        "together they compute every cell, each splitting its batch over every process's "
        "devices, and process 0 alone shows progress and writes --out (on a file system it "
        "can write). The table is the one a single process writes. See docs/scale-out.md.",
        width=78,
    )
    group = parser.add_argument_group(
        "several processes or hosts" if shown else None, about if shown else None
    )
    group.add_argument(
        "--distributed",
        action="store_true",
        help=what(
            "take the coordinator address, number of processes and process id from the "
            "cluster's environment, as JAX detects it (SLURM's srun, Open MPI's mpirun)"
        ),
    )
    group.add_argument(
        "--coordinator",
        default=None,
        metavar="HOST:PORT",
        help=what("address of process 0, reachable from every process (with the next two)"),
    )
    group.add_argument(
        "--num-processes", default=None, metavar="N", help=what("number of processes")
    )
    group.add_argument(
        "--process-id", default=None, metavar="I", help=what("this process: 0, ..., N - 1")
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
    _distributed_options(run)

    plot = sub.add_parser("plot", help="redraw a results folder's figures from its files")
    plot.add_argument("folder", type=Path, metavar="DIR", help="a results folder of `jaxflow run`")

    sweep = sub.add_parser(
        "sweep",
        help="run a preset over a grid of parameters into one Parquet dataset",
        description="Run PRESET at every combination of the --grid values. Each finished "
        "grid point's rows (with param_* columns and a config_hash) are written to "
        "OUT/table/<config_hash>.parquet; rerunning skips finished points; --shard i/k "
        "runs every k-th point from the i-th, so k independent jobs share the grid. Read "
        "the dataset with pyarrow.parquet.read_table('OUT/table'). A sweep runs in one "
        "process: its points are independent runs, so k jobs with --shard i/k (e.g. a "
        "SLURM array) need no communication; to spread one large point over several "
        "processes, use `jaxflow run --distributed`.",
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
    _distributed_options(sweep, shown=False)
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


def _cpu_devices(count: str | None) -> None:
    if count is None:
        return
    import jax

    from .experiments import ConfigError

    if not (count.isdigit() and int(count) >= 1):
        raise ConfigError(
            f"--cpu-devices {count}: expected a positive integer (e.g. the number of cores)."
        )
    # Read when JAX starts its CPU backend, which nothing has done yet.
    jax.config.update("jax_num_cpu_devices", int(count))


def _distributed(args) -> dict | None:
    """The arguments of `jaxflow.initialize_distributed` the options give (`None`: one
    process), checked before any work."""
    from ._distributed import check_coordinator
    from .experiments import ConfigError

    explicit = (args.coordinator, args.num_processes, args.process_id)
    if args.distributed:
        if any(v is not None for v in explicit):
            raise ConfigError(
                "--distributed: takes the coordinator, number of processes and process id "
                "from the cluster's environment; give it alone, or drop it and give "
                "--coordinator, --num-processes and --process-id."
            )
        return {}
    if all(v is None for v in explicit):
        return None
    if any(v is None for v in explicit):
        raise ConfigError(
            "--coordinator, --num-processes, --process-id: give all three (or --distributed "
            "alone, where the cluster's environment sets them)."
        )
    try:
        check_coordinator(args.coordinator, "--coordinator")
    except ValueError as e:
        raise ConfigError(e.args[0]) from None
    count, index = args.num_processes, args.process_id
    if not (count.isdigit() and int(count) >= 1):
        raise ConfigError(f"--num-processes {count}: expected a positive integer.")
    if not (index.isdigit() and int(index) < int(count)):
        raise ConfigError(
            f"--process-id {index}: expected an integer from 0 to {int(count) - 1} "
            f"(--num-processes {count})."
        )
    return dict(
        coordinator_address=args.coordinator, num_processes=int(count), process_id=int(index)
    )


def _join(arguments: dict) -> None:
    from . import initialize_distributed
    from .experiments import ConfigError

    try:
        initialize_distributed(**arguments)
    except ValueError as e:
        if arguments:  # checked already: a refusal of JAX's own
            raise ConfigError(f"--coordinator {arguments['coordinator_address']}: {e}") from None
        raise ConfigError(
            "--distributed: JAX finds no cluster in this environment (it reads SLURM's srun, "
            "Open MPI's mpirun, ...); start the command under one, or give --coordinator, "
            "--num-processes and --process-id."
        ) from None


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

    distributed = _distributed(args)
    preset = _preset(args)
    _cpu_devices(args.cpu_devices)
    if distributed is not None:
        _join(distributed)  # before the first JAX computation
    _compilation_cache(args.compilation_cache)
    out = args.out or Path("results") / preset.name
    start = time.perf_counter()
    result = run(preset, out, progress=not args.no_progress)
    if result is None:  # not process 0: it reports
        return 0
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
    from .experiments import ConfigError, parse_grid, parse_shard, run_sweep, status

    given = [name for name in _DISTRIBUTED_OPTIONS if vars(args)[name[2:].replace("-", "_")]]
    if given:
        raise ConfigError(
            f"{given[0]}: jaxflow sweep runs in one process; its points are independent "
            "runs, so give each job a --shard i/k (e.g. a SLURM array), or spread one point "
            "over several processes with jaxflow run --distributed."
        )
    preset = _preset(args)
    shard = parse_shard(args.shard)
    sweep = parse_grid(preset, args.grid, args.spec)
    _cpu_devices(args.cpu_devices)
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

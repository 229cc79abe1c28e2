"""The `jaxflow` command: list presets and run one to a results folder.

jaxflow list [PRESET]
jaxflow run PRESET [--set key=value ...] [--out DIR] [--quick] [--no-progress]
jaxflow run PRESET --config DIR/config.json [--set key=value ...]
"""

import argparse
import os
import sys
import time
from pathlib import Path


def _presets_epilog() -> str:
    from .experiments import describe, PRESETS

    blocks = [f"{name}: {cls.summary}\n{describe(cls)}" for name, cls in sorted(PRESETS.items())]
    return "presets and their parameters (set with --set key=value):\n\n" + "\n\n".join(blocks)


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
    run.add_argument("preset", help="preset name (see `jaxflow list`)")
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a preset parameter; repeatable",
    )
    run.add_argument(
        "--out", type=Path, default=None, help="results folder (default: results/PRESET)"
    )
    run.add_argument(
        "--quick",
        action="store_true",
        help="a small configuration of the same study that finishes in seconds",
    )
    run.add_argument("--no-progress", action="store_true", help="hide progress bars")
    run.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="PATH",
        help="start from the parameters in a results folder's config.json (or "
        "the folder); --quick and --set apply on top",
    )
    return parser


def _list(name: str | None) -> int:
    from .experiments import describe, get_preset, PRESETS

    if name is not None:
        try:
            cls = get_preset(name)
        except KeyError as e:
            print(f"jaxflow: error: {e.args[0]}", file=sys.stderr)
            return 2
        print(f"{name}: {cls.summary}\n\nparameters (set with --set key=value):\n{describe(cls)}")
        return 0
    width = max(map(len, PRESETS))
    for name, cls in sorted(PRESETS.items()):
        print(f"{name.ljust(width)}  {cls.summary}")
    print("\nRun `jaxflow list PRESET` for one preset's parameters, `jaxflow run --help` for all.")
    return 0


def _read_config(path: Path, read_config, ConfigError):
    """The preset in `path`, with every way a file can be wrong turned into one line."""
    try:
        return read_config(path)
    except ConfigError:
        raise
    except KeyError as e:
        raise ConfigError(f"--config {path}: {e.args[0]}") from None
    except (OSError, ValueError, TypeError) as e:  # unreadable, not JSON, not a record
        raise ConfigError(f"--config {path}: {e}") from None


def _run(args) -> int:
    import jax

    # Exact answers need double precision; each preset still picks its own dtype.
    jax.config.update("jax_enable_x64", True)
    from .experiments import (
        apply_overrides,
        ConfigError,
        format_table,
        get_preset,
        read_config,
        write_results,
    )

    try:
        preset = get_preset(args.preset)()
        if args.config is not None:
            preset = _read_config(args.config, read_config, ConfigError)
            if preset.name != args.preset:
                raise ConfigError(
                    f"--config {args.config} holds preset {preset.name}, not {args.preset}."
                )
        if args.quick:
            preset = preset.quick()
        preset = apply_overrides(preset, args.overrides)
    except (KeyError, ConfigError) as e:
        print(f"jaxflow: error: {e.args[0]}", file=sys.stderr)
        return 2
    out = args.out or Path("results") / preset.name
    start = time.perf_counter()
    results = preset.run(out, progress=not args.no_progress)
    written = write_results(preset, results, out)
    print(format_table(results.rows, results.summary))
    print(f"\n{preset.name} finished in {time.perf_counter() - start:.1f} s; wrote:")
    for path in written:
        print(f"  {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "list":
            return _list(args.name)
        return _run(args)
    except BrokenPipeError:
        # The reader went away (`jaxflow list | head`): not an error of the run. Point
        # stdout at devnull so that the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())

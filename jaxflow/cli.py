"""The `jaxflow` command: list presets and run one to a results folder.

    jaxflow list
    jaxflow run PRESET [--set key=value ...] [--out DIR] [--quick] [--no-progress]
"""

import argparse
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
    sub.add_parser("list", help="list the presets and what each reproduces")
    run = sub.add_parser(
        "run",
        help="run a preset and write its results folder",
        epilog=_presets_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("preset", help="preset name (see `jaxflow list`)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a preset parameter; repeatable")
    run.add_argument("--out", type=Path, default=None,
                     help="results folder (default: results/PRESET)")
    run.add_argument("--quick", action="store_true",
                     help="a small configuration of the same study that finishes in seconds")
    run.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return parser


def _list() -> None:
    from .experiments import PRESETS

    width = max(map(len, PRESETS))
    for name, cls in sorted(PRESETS.items()):
        print(f"{name.ljust(width)}  {cls.summary}")
    print("\nRun `jaxflow run --help` for every preset's parameters.")


def _run(args) -> int:
    import jax

    # Exact answers need double precision; each preset still picks its own dtype.
    jax.config.update("jax_enable_x64", True)
    from .experiments import apply_overrides, ConfigError, format_table, get_preset, write_results

    try:
        preset = get_preset(args.preset)()
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
    if args.command == "list":
        _list()
        return 0
    return _run(args)


if __name__ == "__main__":
    sys.exit(main())

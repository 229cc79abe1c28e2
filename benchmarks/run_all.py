"""Every benchmark in one command, and one markdown report naming the machine.

Each measurement runs in a fresh process (its peak resident memory read back with
`os.wait4`), one after another:

- `flows`: `flows.py`, the probability flow against the batch size, with its matmul
  roofline, chunk-size sweep and peak-memory probes;
- `shapes`: the `relu` flow of `flows.py` against the dimension d and the width K, at one
  batch size;
- `devices`: the same flow against the number of devices, one process per count (on CPU,
  `XLA_FLAGS=--xla_force_host_platform_device_count=k` splits the cores into k devices:
  this measures the cost of splitting, not a speed-up), with its endpoints compared
  bitwise to one device's;
- `end_to_end`: one large batch of that flow in a fresh process, compilation included
  (on a GPU, the 10^7 trajectories of the scale-out target);
- `linear`: `linear.py`, the reference sweep of the relative distance;
- `training`: `training.py`, the per-level networks trained in one program, one level
  at a time, and in PyTorch where it is installed.

Sizes are chosen per backend (`SIZES`); the same command runs on a CPU or a GPU and
names it. The report, `report.md`, gathers every script's own tables under a summary of
wall time, peak memory and targets, with the machine's load before and after.

Usage (see benchmarks/README.md):

    python benchmarks/run_all.py --quick      # sanity check, a few minutes
    python benchmarks/run_all.py              # the full report, into benchmarks/results
    python benchmarks/run_all.py --only flows,training

Writes report.md and every script's JSON and markdown files to `--out`.
"""

import argparse
import hashlib
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time


# The environment the user started with, for the children: importing _common sets
# jaxflow's CPU defaults here (OPENBLAS_NUM_THREADS=1 among them), and each script sets
# them for itself after reading what it needs of the original (NumPy's threads).
ENVIRON = dict(os.environ)

import flows  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import jax.random as jr  # noqa: E402
import jaxflow as jf  # noqa: E402
import numpy as np  # noqa: E402
from _common import (  # noqa: E402
    describe,
    device_peak_bytes,
    fmt,
    machine,
    markdown_table,
    peak_rss_bytes,
    RESULTS,
    RUN,
    square_matmul,
    timeit,
)


HERE = pathlib.Path(__file__).resolve().parent
BENCHMARKS = ("flows", "shapes", "devices", "end_to_end", "linear", "training")
MARK = "RESULT "  # prefix of the JSON lines a child prints for this script

# Per backend ("cpu" or an accelerator), full run and --quick. On the 2-core CPU the
# largest flows batch is 2^18 (the relu flow takes about 13 s per call there, 2^20 about
# 50 s, 2^22 would take minutes per call): the whole report then takes about 15 minutes.
SIZES = {
    "cpu": {
        "full": {"flows_log2": 18, "shape_log2": 14, "device_log2": 16, "end_to_end": 2**18},
        "quick": {"flows_log2": 14, "shape_log2": 12, "device_log2": 14, "end_to_end": 2**14},
    },
    "accelerator": {
        "full": {"flows_log2": 22, "shape_log2": 20, "device_log2": 22, "end_to_end": 10**7},
        "quick": {"flows_log2": 18, "shape_log2": 16, "device_log2": 18, "end_to_end": 2**20},
    },
}
# (d, K) of the shape sweep: d at the default width, then K at the default d.
SHAPES = ((10, 512), (30, 512), (100, 512), (30, 128), (30, 2048))
DEVICE_COUNTS = (1, 2, 4, 8)
END_TO_END_TARGET_S = 10.0  # 10^7 trajectories on a GPU, compilation included


# --------------------------------------------------------------------------------------
# Children: measurements in a fresh process, printed as JSON lines. The parent itself
# never starts a JAX backend (on a GPU it would hold the device's memory).
# --------------------------------------------------------------------------------------


def child_machine(args) -> None:
    """The machine's description and its square matmul rates in float32 and float64."""
    info = machine()  # x64 as the flows benchmarks run: off
    jax.config.update("jax_enable_x64", True)
    n = args.matmul_size
    info["matmul"] = {
        "float32": square_matmul(n, jnp.float32),
        "float64": square_matmul(n, jnp.float64),
    }
    print(MARK + json.dumps(info), flush=True)


def child_flow(args) -> None:
    """The `relu` flow of `flows.py` (64 Heun steps, float32) through
    `jaxflow.probability_flow` for each `d x K` of `--shapes` at `--batch` starts, in
    flows.py's default chunks for this backend: first call and best of the repeats."""
    chunk = flows.parse([]).chunk_size
    for shape in args.shapes.split(","):
        d, width = (int(v) for v in shape.split("x"))
        denoiser = jf.ShallowReLU.random(d, width, key=jr.key(0), dtype=flows.DTYPE)
        y0 = jax.block_until_ready(0.5 + 0.3 * jr.normal(jr.key(1), (args.batch, d), flows.DTYPE))
        size = chunk if chunk and chunk < args.batch else None
        ends = {}

        def run(denoiser=denoiser, y0=y0, size=size):
            ends["out"] = flows.jaxflow_flow(denoiser, y0, size)
            return ends["out"]

        timing = timeit(run, repeats=args.repeats, min_repeats=min(args.repeats, 1))
        best = timing.best_s
        flops = args.batch * flows.STEPS * 2 * (4 * d * width + 2 * d * d)
        row = {
            "d": d,
            "width": width,
            "batch": args.batch,
            "chunk_size": size,
            "devices": jax.device_count(),
            "first_s": timing.first_s,
            "best_s": best,
            "compile_s": timing.compile_s if timing.repeats else None,
            "repeats": timing.repeats,
            "traj_steps_per_s": args.batch * flows.STEPS / best,
            "gflops": flops / best / 1e9,
            "endpoints_sha256": hashlib.sha256(np.asarray(ends["out"].ys).tobytes()).hexdigest(),
            "peak_rss": peak_rss_bytes(),
            "device_peak": device_peak_bytes(),
        }
        print(MARK + json.dumps(row), flush=True)


# --------------------------------------------------------------------------------------
# The parent: runs the children and the scripts, then writes the report
# --------------------------------------------------------------------------------------


def run(name: str, cmd: list[str], logs: pathlib.Path, env=ENVIRON) -> dict:
    """Run `cmd`, its output echoed and kept in `logs/name.log`; return its exit status,
    wall time, peak RSS (the largest of the process and its waited-for children), the
    load average when it started, and the JSON lines it printed after `MARK`."""
    logs.mkdir(parents=True, exist_ok=True)
    print(f"\n=== {name}: {' '.join(cmd[1:])}", flush=True)
    load = os.getloadavg()[0]
    start = time.perf_counter()
    results = []
    with open(logs / f"{name}.log", "w") as log:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=HERE
        )
        for line in proc.stdout:
            log.write(line)
            if line.startswith(MARK):
                results.append(json.loads(line[len(MARK) :]))
            else:
                sys.stdout.write(line)
                sys.stdout.flush()
        # wait4, not Popen.wait: it also returns the child's resource usage.
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode:
        print(f"=== {name} FAILED (exit {proc.returncode}); log: {logs / name}.log", flush=True)
    return {
        "name": name,
        "rc": proc.returncode,
        "wall_s": wall,
        "peak_rss": usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024),
        "load_at_start": load,
        "results": results,
    }


def script(name: str, *flags: str) -> list[str]:
    return [sys.executable, str(HERE / f"{name}.py"), *flags]


def this(*flags: str) -> list[str]:
    return [sys.executable, str(HERE / "run_all.py"), *flags]


def device_env(backend: str, k: int) -> dict[str, str]:
    """The environment of a child that sees k devices."""
    env = dict(ENVIRON)
    if backend == "cpu":
        flags = env.get("XLA_FLAGS", "")
        env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={k}".strip()
    else:
        visible = env.get("CUDA_VISIBLE_DEVICES")
        ids = visible.split(",") if visible else [str(i) for i in range(k)]
        env["CUDA_VISIBLE_DEVICES"] = ",".join(ids[:k])
    return env


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv=None) -> int:
    args = parse(argv)
    if args.child == "machine":
        return child_machine(args) or 0
    if args.child == "flow":
        return child_flow(args) or 0

    out = args.out or (
        pathlib.Path(tempfile.gettempdir()) / "jaxflow-benchmarks-quick" if args.quick else RESULTS
    )
    if args.report_only:
        summary = json.loads((out / "report.json").read_text())
        if summary.get("run_id") is None:
            print(
                f"run_all.py --report-only: {out / 'report.json'} records no run, so its "
                "scripts' files cannot be told from another run's; rerun run_all.py.",
                file=sys.stderr,
            )
            return 2
        stale = _stale(summary, out)
        if stale:
            print(
                f"run_all.py --report-only: {', '.join(f'{n}.json' for n in stale)} in {out} "
                "not from the run report.json records; rerun them with run_all.py "
                f"(--only {','.join(stale)} rewrites the report for those alone).",
                file=sys.stderr,
            )
            return 2
        (out / "report.md").write_text(report(summary, out))
        print(f"wrote {out / 'report.md'}")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    logs = args.logs or pathlib.Path(tempfile.mkdtemp(prefix="jaxflow-benchmark-logs-"))
    ENVIRON["JAXFLOW_BENCHMARK_RESULTS"] = str(out)  # every script writes there
    run_id = ENVIRON[RUN] = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    quick = ("--quick",) if args.quick else ()
    load_before = uptime()
    start = time.perf_counter()

    m = run("machine", this("--child", "machine", "--matmul-size", str(args.matmul_size)), logs)
    if m["rc"] or not m["results"]:
        print("could not start JAX; nothing measured", file=sys.stderr)
        return 1
    info = m["results"][0]
    backend = info["backend"]
    kind = "cpu" if backend == "cpu" else "accelerator"
    sizes = dict(SIZES[kind]["quick" if args.quick else "full"])
    if args.max_log2_batch:
        sizes["flows_log2"] = args.max_log2_batch
    print(describe(info), flush=True)

    runs = {}
    only = set(args.only.split(",")) if args.only else set(BENCHMARKS)
    repeats = str(1 if args.quick else 2)
    if "flows" in only:
        runs["flows"] = run(
            "flows", script("flows", *quick, "--max-log2-batch", str(sizes["flows_log2"])), logs
        )
    if "shapes" in only:
        shapes = ",".join(f"{d}x{k}" for d, k in SHAPES)
        batch = str(2 ** sizes["shape_log2"])
        flags = ("--shapes", shapes, "--batch", batch, "--repeats", repeats)
        runs["shapes"] = run("shapes", this("--child", "flow", *flags), logs)
    if "devices" in only:
        counts = DEVICE_COUNTS if backend == "cpu" else powers_up_to(len(info["devices"]))
        batch = str(2 ** sizes["device_log2"])
        for k in counts:
            flags = ("--shapes", "30x512", "--batch", batch, "--repeats", repeats)
            env = device_env(backend, k)
            runs[f"devices_{k}"] = run(f"devices_{k}", this("--child", "flow", *flags), logs, env)
    if "end_to_end" in only:
        flags = ("--shapes", "30x512", "--batch", str(sizes["end_to_end"]), "--repeats", "1")
        runs["end_to_end"] = run("end_to_end", this("--child", "flow", *flags), logs)
    if "linear" in only:
        # One NumPy cell: its time is the reference sample's terms, whatever n.
        runs["linear"] = run("linear", script("linear", *quick, "--numpy-cells", "1"), logs)
    if "training" in only:
        torch = ("--no-torch",) if args.no_torch else ()
        runs["training"] = run("training", script("training", *quick, *torch), logs)

    summary = {
        "run_id": run_id,
        "machine": info,
        "quick": args.quick,
        "matmul_size": args.matmul_size,
        "sizes": sizes,
        "load_before": load_before,
        "load_after": uptime(),
        "elapsed_s": time.perf_counter() - start,
        "runs": runs,
    }
    (out / "report.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "report.md").write_text(report(summary, out))
    elapsed = summary["elapsed_s"]
    print(f"\nwrote {out / 'report.md'} in {elapsed:.0f} s; logs in {logs}")
    failed = [name for name, r in runs.items() if r["rc"]]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def powers_up_to(n: int) -> list[int]:
    return [2**i for i in range(n.bit_length()) if 2**i <= n]


# --------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------


def _section(out: pathlib.Path, name: str) -> list[str]:
    """A script's own markdown, its headings one level down, without the line naming the
    machine (the report's first)."""
    path = out / f"{name}.md"
    if not path.exists():
        return [f"`{name}.md` was not written."]
    lines = path.read_text().rstrip().splitlines()
    kept = []
    for line in lines:
        if not line.startswith("Machine: ") and (line or (kept and kept[-1])):
            kept.append("#" + line if line.startswith("#") else line)
    return kept


def _json(out: pathlib.Path, name: str) -> dict:
    path = out / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {}


# The benchmarks whose scripts write their own JSON and markdown into the results folder.
SCRIPTS = ("flows", "linear", "training")


def _stale(summary: dict, out: pathlib.Path) -> list[str]:
    """The scripts of the run `summary` records whose files in `out` another run wrote
    (or a script run on its own): a failed script leaves an earlier run's files."""
    return [
        name
        for name in SCRIPTS
        if name in summary["runs"] and _json(out, name).get("run") != summary.get("run_id")
    ]


def _targets(out, runs, info) -> list[dict]:
    """Every benchmark's targets, as `target`, `measured`, `met`."""
    rows = []
    if "flows" in runs:
        rows += [{"benchmark": "flows", **t} for t in _json(out, "flows").get("targets", [])]
    if "linear" in runs:
        linear = _json(out, "linear")
        target = linear.get("target", {})
        if "command_s" in target:
            devices = ", ".join(
                f"{c['wall_s']:.1f} s on {c['cpu_devices']} device(s)"
                for c in linear.get("commands", [])
            )
            rows.append(
                {
                    "benchmark": "linear",
                    "target": "`jaxflow run linear-transition` (R = 300, both arithmetics, "
                    "figures) < 60 s as a whole command",
                    "measured": devices,
                    "met": ("yes" if target["command_under_60_s"] else "no")
                    if linear["repetitions"] == 300 and not linear.get("quick")
                    else "not measured (a smaller run)",
                }
            )
        grids = linear.get("compile", [])
        if len(grids) >= 2:
            # Flat: the largest grid compiles in at most a quarter more than the smallest.
            first, last = grids[0], grids[-1]
            rows.append(
                {
                    "benchmark": "linear",
                    "target": f"sweep compile time flat from {first['grid']} to "
                    f"{last['grid']} sizes",
                    "measured": ", ".join(f"{g['compile_s']:.1f} s" for g in grids),
                    "met": "yes" if last["compile_s"] <= 1.25 * first["compile_s"] else "no",
                }
            )
    if "training" in runs:
        rows += [{"benchmark": "training", **t} for t in _json(out, "training").get("targets", [])]
    devices = _device_rows(runs)
    if len(devices) > 1:
        same = all(r["endpoints_sha256"] == devices[0]["endpoints_sha256"] for r in devices)
        rows.append(
            {
                "benchmark": "devices",
                "target": "relu flow endpoints bitwise equal on every device count",
                "measured": ", ".join(str(r["devices"]) for r in devices) + " devices",
                "met": "yes" if same else "no",
            }
        )
    e2e = runs.get("end_to_end", {}).get("results", [])
    if e2e and info["backend"] != "cpu" and e2e[0]["batch"] >= 10**7:
        first = e2e[0]["first_s"]
        rows.append(
            {
                "benchmark": "end_to_end",
                "target": f"10^7 relu trajectories < {END_TO_END_TARGET_S:g} s with compilation",
                "measured": f"{first:.2f} s",
                "met": "yes" if first < END_TO_END_TARGET_S else "no",
            }
        )
    return rows


def _device_rows(runs) -> list[dict]:
    return [r["results"][0] for n, r in runs.items() if n.startswith("devices_") and r["results"]]


def _flow_columns(first: str, header: str, memory: bool = True) -> list[tuple[str, str, str]]:
    columns = [
        (first, header, ""),
        ("batch", "batch", ""),
        ("best_s", "run s", ".3f"),
        ("compile_s", "compile s", ".2f"),
        ("traj_steps_per_s", "traj x steps / s", ".3g"),
        ("gflops", "GFLOP/s", ".1f"),
        ("frac_matmul", "% matmul", ".1%"),
    ]
    if memory:
        columns += [("peak_mib", "peak RSS MiB", ".0f"), ("device_mib", "device peak MiB", ".0f")]
    return columns


def _with_rates(rows, rate) -> list[dict]:
    mib = lambda b: None if b is None else b / 2**20  # noqa: E731
    return [
        {
            **r,
            "frac_matmul": r["gflops"] / rate,
            "peak_mib": mib(r["peak_rss"]),
            "device_mib": mib(r["device_peak"]),
            "shape": f"{r['d']} x {r['width']}",
        }
        for r in rows
    ]


def report(summary: dict, out: pathlib.Path) -> str:
    """The markdown report of a run (`report.json`'s contents) whose files are in `out`;
    a script's files that another run wrote are left out."""
    info, sizes = summary["machine"], summary["sizes"]
    stale = _stale(summary, out)
    runs = {name: r for name, r in summary["runs"].items() if name not in stale}
    rate32 = info["matmul"]["float32"]["gflops"]
    rate64 = info["matmul"]["float64"]["gflops"]
    cpu = info["backend"] == "cpu"
    table = [
        {
            "name": name,
            "status": ("ok" if r["rc"] == 0 else f"failed (exit {r['rc']})")
            + ("; its files are another run's, left out" if name in stale else ""),
            "wall_s": r["wall_s"],
            "peak_mib": r["peak_rss"] / 2**20,
            "load": r["load_at_start"],
        }
        for name, r in summary["runs"].items()
    ]
    lines = [
        "# jaxflow benchmarks",
        "",
        f"Machine: {describe(info)}.",
        "",
        f"Matmul rates (one square {summary['matmul_size']} product, best of 5): "
        f"float32 {rate32:.1f} GFLOP/s, float64 {rate64:.1f} GFLOP/s.",
        "",
        f"{'Quick' if summary['quick'] else 'Full'} run of `benchmarks/run_all.py`"
        f" in {summary['elapsed_s'] / 60:.1f} minutes. Sizes for this backend: flows "
        "batches 2^10 .. "
        f"2^{sizes['flows_log2']}"
        + (
            " (capped on CPU, where 2^20 takes about 50 s per call; `--max-log2-batch`)"
            if cpu
            else ""
        )
        + f", shape sweep at 2^{sizes['shape_log2']}, device sweep at 2^{sizes['device_log2']}, "
        f"end to end at {sizes['end_to_end']:,} trajectories.",
        "",
        f"Load before: `{summary['load_before']}`. After: `{summary['load_after']}`. "
        "Every number is a wall-clock time on this machine: other jobs on the same cores "
        "lengthen them, the single calls "
        "at the largest batches most; ratios of implementations that take turns call by "
        "call (flows: jaxflow and scan; training: the two JAX ways) are the most robust. "
        "Each section's own machine line is left out: it is this one, x64 as its script "
        "sets it (on for `linear` and `training`).",
        "",
        "## Summary",
        "",
        "Each benchmark ran in a fresh process. `peak RSS`: the largest resident memory of "
        "the process or of the processes it waited for (memory probes included); `load`: "
        "the 1-minute load average when it started.",
        "",
        markdown_table(
            table,
            [
                ("name", "benchmark", ""),
                ("status", "status", ""),
                ("wall_s", "wall s", ".0f"),
                ("peak_mib", "peak RSS MiB", ".0f"),
                ("load", "load", ".2f"),
            ],
        ),
        "",
        "## Targets",
        "",
        markdown_table(
            _targets(out, runs, info),
            [
                ("benchmark", "benchmark", ""),
                ("target", "target", ""),
                ("measured", "measured", ""),
                ("met", "met", ""),
            ],
        ),
    ]
    problem = (
        "the `relu` flow of `flows.py` (a random `ShallowReLU`, 64 Heun steps from sigma "
        "0.08 to 0.001, float32) through `jaxflow.probability_flow` in its default chunks for "
        "this backend; FLOPs 2 x 64 x (4dK + 2d^2) per trajectory; `% matmul`: over the "
        "float32 square matmul rate above; `run s`: best of the calls after the first; "
        "`compile s`: first call minus that."
    )
    if "flows" in runs:
        lines += ["", *_section(out, "flows")]
    shape_rows = runs.get("shapes", {}).get("results", [])
    if shape_rows:
        lines += [
            "",
            "## Probability flow against d and width K",
            "",
            f"One process, {shape_rows[0]['batch']:,} starts each: {problem}",
            "",
            markdown_table(
                _with_rates(shape_rows, rate32), _flow_columns("shape", "d x K", memory=False)
            ),
        ]
    device_rows = _device_rows(runs)
    if device_rows:
        base = device_rows[0]["best_s"]
        for r in device_rows:
            r["vs_one"] = base / r["best_s"]
            r["same"] = (
                "yes" if r["endpoints_sha256"] == device_rows[0]["endpoints_sha256"] else "no"
            )
        note = (
            f"On this CPU ({info['cores']} cores) the devices are `XLA_FLAGS="
            "--xla_force_host_platform_device_count=k` splitting the same cores: this measures "
            "what splitting a chunk across devices costs, not a speed-up."
            if cpu
            else "Each count sees the first k GPUs (`CUDA_VISIBLE_DEVICES`)."
        )
        lines += [
            "",
            "## Probability flow against the number of devices",
            "",
            f"One process per device count, d = 30, K = 512, {device_rows[0]['batch']:,} "
            f"starts: {problem} {note} `vs 1 device`: one device's run time over this row's; "
            "`same endpoints`: bitwise equal to one device's.",
            "",
            markdown_table(
                _with_rates(device_rows, rate32),
                _flow_columns("devices", "devices")
                + [("vs_one", "vs 1 device", ".2f"), ("same", "same endpoints", "")],
            ),
        ]
    e2e = runs.get("end_to_end", {}).get("results", [])
    if e2e:
        r = _with_rates(e2e, rate32)[0]
        lines += [
            "",
            "## Probability flow end to end",
            "",
            f"{r['batch']:,} trajectories, d = 30, K = 512, in a fresh process: the first call "
            f"(compilation included) took {r['first_s']:.2f} s, a second {r['best_s']:.2f} s "
            f"({r['gflops']:.1f} GFLOP/s, {r['frac_matmul']:.0%} of the float32 matmul rate); "
            f"peak RSS {fmt(r['peak_mib'], '.0f')} MiB, device peak "
            f"{fmt(r['device_mib'], '.0f')} MiB.",
        ]
    if "linear" in runs:
        lines += ["", *_section(out, "linear")]
    if "training" in runs:
        lines += ["", *_section(out, "training")]
    return "\n".join(lines).rstrip() + "\n"


def parse(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a sanity check")
    parser.add_argument(
        "--out",
        type=pathlib.Path,
        help="results folder; default benchmarks/results (a temporary folder with --quick)",
    )
    parser.add_argument("--logs", type=pathlib.Path, help="folder of the logs; default temporary")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(BENCHMARKS)}")
    parser.add_argument(
        "--max-log2-batch", type=int, help="largest flows batch (default 18 on CPU, 22 on GPU)"
    )
    parser.add_argument("--matmul-size", type=int, help="square matmul side (default 4096)")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch training loop")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="measure nothing: rewrite report.md from the report.json in --out",
    )
    # Children (internal).
    parser.add_argument("--child", choices=("machine", "flow"), help=argparse.SUPPRESS)
    parser.add_argument("--shapes", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.only and not set(args.only.split(",")) <= set(BENCHMARKS):
        parser.error(f"--only takes names among {', '.join(BENCHMARKS)}, got {args.only!r}")
    args.matmul_size = args.matmul_size or (2048 if args.quick else 4096)
    return args


if __name__ == "__main__":
    sys.exit(main())

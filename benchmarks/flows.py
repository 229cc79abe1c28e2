"""Probability-flow throughput of `jaxflow.flows.probability_flow`, side by side with a
hand-written `jax.lax.scan` Heun loop, a NumPy Heun loop and the machine's matmul FLOP/s.

The problem: the EDM probability flow dy/dsigma = (y - D(y; sigma)) / sigma from
sigma = 0.08 down to 1e-3, 64 Heun steps on the geometric grid, float32, d = 30, for two
denoisers:

- `minnorm`: the closed form `MinNormOrthogonal` on N = 30 orthogonal points;
- `relu`: a random `ShallowReLU` with K = 512 hidden units (nonzero biases and skip).

FLOPs are counted from the denoiser's matrix products only, 2 per multiply-add;
elementwise work (biases, ReLU, clip, the vector field, the Heun update) is not counted:

- `relu`: w y and a^T relu(.) are 2dK each, V y is 2d^2: 4dK + 2d^2 = 63 240 per
  evaluation;
- `minnorm`: u_n . y for every n, then sum_n x_n clip(.), 2Nd each: 4Nd = 3 600 per
  evaluation;

and Heun evaluates the denoiser twice per step (it is not FSAL: both evaluations are
new at every step), so one trajectory costs 64 x 2 evaluations.

Usage (see benchmarks/README.md):

    python benchmarks/flows.py                  # full run: batches 2^10 .. 2^20
    python benchmarks/flows.py --quick          # about a minute
    python benchmarks/flows.py --max-log2-batch 18

Writes benchmarks/results/flows.json and benchmarks/results/flows.md.
"""

import argparse
import gc
import json
import math
import os
import pathlib
import subprocess
import sys
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import jaxflow as jf
import numpy as np
from _common import (
    describe,
    device_peak_bytes,
    machine,
    markdown_table,
    peak_rss_bytes,
    reset_peak_rss,
    rss_bytes,
    timeit,
    timeit_together,
    write_results,
)


try:  # the library's row-block size on this backend, named in the report
    from jaxflow.flows import block_size
except ImportError:

    def block_size():
        return None


D = 30  # dimension, and the number of orthogonal points for `minnorm`
WIDTH = 512  # hidden units of the `relu` denoiser
STEPS = 64
SIGMA_MAX, SIGMA_MIN = 0.08, 1e-3  # below MinNormOrthogonal's max_sigma = 1 / (2 sqrt(30))
DTYPE = jnp.float32
DENOISERS = ("minnorm", "relu")
TARGET_LOG2_BATCH = 16  # the targets apply from this batch size up


# --------------------------------------------------------------------------------------
# The problem
# --------------------------------------------------------------------------------------


def make_denoiser(name: str):
    if name == "minnorm":
        points = jf.data.orthogonal(D, D, dtype=DTYPE).points
        return jf.MinNormOrthogonal(points)
    wkey, bkey, vkey = jr.split(jr.key(0), 3)
    net = jf.ShallowReLU.random(D, WIDTH, key=wkey, dtype=DTYPE)
    # Nonzero biases and skip, so that no term of the network is trivially zero.
    b = 0.1 * jr.normal(bkey, (WIDTH,), DTYPE)
    v = 0.1 * jr.normal(vkey, (D, D), DTYPE) / math.sqrt(D)
    return eqx.tree_at(lambda m: (m.b, m.v), net, (b, v))


def flops_per_evaluation(name: str) -> int:
    return 4 * D * WIDTH + 2 * D * D if name == "relu" else 4 * D * D


def flops_per_trajectory(name: str, steps: int = STEPS) -> int:
    return steps * 2 * flops_per_evaluation(name)  # Heun: two evaluations per step


def make_starts(batch: int):
    """Noisy starts around the centre of the hyperbox, as in the README's example."""
    return 0.5 + 0.3 * jr.normal(jr.key(1), (batch, D), DTYPE)


def sigmas(steps: int = STEPS):
    """The float32 geometric grid that `probability_flow` steps on."""
    return jf.flows.Geometric().grid(
        jnp.asarray(SIGMA_MAX, DTYPE), jnp.asarray(SIGMA_MIN, DTYPE), steps
    )


# --------------------------------------------------------------------------------------
# The implementations: (denoiser, y0, chunk_size, steps) -> outputs
# --------------------------------------------------------------------------------------


def jaxflow_flow(denoiser, y0, chunk_size, steps=STEPS):
    """The library's path, called as a user would (with its default checks). Returns the
    whole `FlowSolution`: its per-trajectory `result` and `num_steps` are outputs too."""
    return jf.probability_flow(
        denoiser,
        y0,
        sigma_max=SIGMA_MAX,
        sigma_min=SIGMA_MIN,
        steps=steps,
        solver="heun",
        schedule="geometric",
        chunk_size=chunk_size,
    )


@jax.jit
def _scan_heun(denoiser, y0, sigmas):
    denoise = jax.vmap(denoiser, in_axes=(0, None))

    def vector_field(sigma, y):
        return (y - denoise(y, sigma)) / sigma

    def step(y, sigma01):
        sigma0, sigma1 = sigma01
        h = sigma1 - sigma0
        k1 = vector_field(sigma0, y)
        k2 = vector_field(sigma1, y + h * k1)
        return y + 0.5 * h * (k1 + k2), None

    y1, _ = jax.lax.scan(step, y0, (sigmas[:-1], sigmas[1:]))
    return y1


def scan_flow(denoiser, y0, chunk_size, steps=STEPS):
    """The baseline: Heun written out as a `lax.scan` over the batched state, on the same
    grid and the same chunks as the library, so that the ratio is the library's cost."""
    grid = sigmas(steps)
    size = y0.shape[0] if chunk_size is None else chunk_size
    pieces = [_scan_heun(denoiser, y0[i : i + size], grid) for i in range(0, y0.shape[0], size)]
    return pieces[0] if len(pieces) == 1 else jnp.concatenate(pieces)


def _numpy_denoiser(name: str, denoiser):
    if name == "relu":
        a, w, b, v, c = (
            np.asarray(x) for x in (denoiser.a, denoiser.w, denoiser.b, denoiser.v, denoiser.c)
        )
        return lambda y, sigma: np.maximum(y @ w.T + b, 0) @ a + y @ v.T + c
    edges = np.asarray(denoiser.points)
    alpha = np.asarray(denoiser.alpha)
    lengths = np.linalg.norm(edges, axis=1)
    apex = np.zeros(D, edges.dtype)

    def minnorm(y, sigma):
        rho = alpha * sigma
        s = ((y - apex) @ edges.T) / lengths
        return apex + np.clip((s - rho) / (lengths - 2 * rho), 0, 1) @ edges

    return minnorm


def numpy_flow(name, denoiser, y0, steps=STEPS):
    """The same Heun loop in NumPy, float32, on the whole batch at once."""
    denoise = _numpy_denoiser(name, denoiser)
    grid = np.asarray(sigmas(steps))
    y = np.array(y0)
    for sigma0, sigma1 in zip(grid[:-1], grid[1:]):
        h = sigma1 - sigma0
        k1 = (y - denoise(y, sigma0)) / sigma0
        y_mid = y + h * k1
        k2 = (y_mid - denoise(y_mid, sigma1)) / sigma1
        y = y + 0.5 * h * (k1 + k2)
    return y


def endpoints(out) -> np.ndarray:
    return np.asarray(out.ys if isinstance(out, jf.flows.FlowSolution) else out)


# --------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------


def matmul_roofline(args) -> dict:
    """Float32 matmul FLOP/s: a large square product, and the skinny pair that one `relu`
    evaluation makes on a block, (rows, d) x (d, K) then (rows, K) x (K, d), chained 32
    times inside one `jit` so that dispatch does not count."""
    n, rows, links = args.matmul_size, block_size() or args.chunk_size or 4096, 32
    square = jax.jit(jnp.matmul)
    a = jr.normal(jr.key(2), (n, n), DTYPE)
    b = jr.normal(jr.key(3), (n, n), DTYPE)
    w = jr.normal(jr.key(4), (D, WIDTH), DTYPE) / math.sqrt(WIDTH)  # w w^T ~ I: no drift
    x = jr.normal(jr.key(5), (rows, D), DTYPE)

    @jax.jit
    def pair(x, w):
        return jax.lax.fori_loop(0, links, lambda i, x: (x @ w) @ w.T, x)

    cases = [
        ("square", n, n, n, 2 * n**3, lambda: square(a, b)),
        (
            f"skinny pair x {links}",
            rows,
            D,
            WIDTH,
            links * 4 * rows * D * WIDTH,
            lambda: pair(x, w),
        ),
    ]
    out = []
    for name, m, k, cols, flops, fn in cases:
        timing = timeit(fn, repeats=max(args.repeats, 5))
        out.append(
            {
                "product": name,
                "m": m,
                "k": k,
                "n": cols,
                "best_s": timing.best_s,
                "gflops": flops / timing.best_s / 1e9,
            }
        )
        print(
            f"matmul {name:18s} m={m} k={k} n={cols}: {out[-1]['gflops']:.1f} GFLOP/s", flush=True
        )
    return {"rows": out, "square": out[0]["gflops"], "skinny": out[1]["gflops"]}


def _row(name, impl, batch, chunk, timing, best, compile_s, roofline) -> dict:
    gflops = batch * flops_per_trajectory(name) / best / 1e9
    row = {
        "denoiser": name,
        "impl": impl,
        "log2_batch": int(math.log2(batch)),
        "batch": batch,
        "chunk_size": chunk,
        "steps": STEPS,
        "first_s": timing.first_s,
        "best_s": best,
        "repeats": timing.repeats,
        "compile_s": compile_s,
        "traj_steps_per_s": batch * STEPS / best,
        "gflops": gflops,
        "frac_matmul": gflops / roofline["square"],
        "frac_skinny": gflops / roofline["skinny"],
    }
    print(
        f"{name:8s} {impl:8s} 2^{row['log2_batch']:<2d} chunk {chunk or '-':>6} best {best:8.3f}s "
        f"(first {timing.first_s:7.3f}s, {timing.repeats} repeats) {row['traj_steps_per_s']:9.3g} "
        f"traj-steps/s {gflops:7.1f} GFLOP/s {100 * row['frac_matmul']:5.1f}% of matmul",
        flush=True,
    )
    return row


def measure(name, impls, denoiser, y0, chunk, args, roofline, warm: set):
    """Time one configuration for each implementation: the JAX ones in turns (first calls,
    then rounds of repeats), NumPy on its own. Return the rows and each one's endpoints."""
    batch = y0.shape[0]
    last = {}

    def keep(impl, fn):
        def run():
            last[impl] = fn()
            return last[impl]

        return run

    jax_flows = {"jaxflow": jaxflow_flow, "scan": scan_flow}
    fns, compiled = {}, True
    for impl in impls:
        if impl not in jax_flows:
            continue
        flow = jax_flows[impl]
        if chunk is not None and (name, impl, chunk) not in warm:
            # Compile the chunk program first, so that a single timed call on a large
            # batch (when the budget leaves no repeat) measures a run, not a compilation.
            jax.block_until_ready(flow(denoiser, y0[:chunk], chunk))
            warm.add((name, impl, chunk))
        compiled = compiled and (name, impl, chunk or batch) in warm
        warm.add((name, impl, chunk or batch))
        fns[impl] = keep(impl, lambda flow=flow: flow(denoiser, y0, chunk))
    timings = timeit_together(
        fns, repeats=args.repeats, budget_s=args.budget, min_repeats=0 if compiled else 1
    )
    rows = []
    for impl, timing in timings.items():
        if compiled:  # nothing compiled in the first call: it is one more run
            best, compile_s = min(timing.first_s, timing.best_s), None
        else:
            best, compile_s = timing.best_s, timing.compile_s
        rows.append(_row(name, impl, batch, chunk, timing, best, compile_s, roofline))
    if "numpy" in impls:
        y0_np = np.asarray(y0)
        timing = timeit(
            keep("numpy", lambda: numpy_flow(name, denoiser, y0_np)),
            repeats=args.repeats,
            budget_s=args.budget,
            min_repeats=0,
        )
        best = min(timing.best_s, timing.first_s)  # nothing to compile: every call counts
        rows.append(_row(name, "numpy", batch, chunk, timing, best, None, roofline))
    return rows, {impl: endpoints(out) for impl, out in last.items()}


def _compare(rows: list[dict], ends: dict) -> None:
    """Add each row's speed relative to the scan row of the same group, and the largest
    endpoint difference from the scan's (where endpoints were kept)."""
    scan = next(r for r in rows if r["impl"] == "scan")
    for row in rows:
        row["vs_scan"] = scan["best_s"] / row["best_s"]
        if ends.get(row["impl"]) is not None and ends.get("scan") is not None:
            row["max_abs_diff_vs_scan"] = float(np.max(np.abs(ends[row["impl"]] - ends["scan"])))


def throughput(args, roofline) -> list[dict]:
    y0_all = make_starts(2**args.max_log2_batch)
    rows = []
    for name in DENOISERS:
        denoiser = make_denoiser(name)
        warm = set()
        for log2 in range(args.min_log2_batch, args.max_log2_batch + 1, args.log2_step):
            batch = 2**log2
            y0 = y0_all[:batch]
            chunk = args.chunk_size if args.chunk_size and args.chunk_size < batch else None
            impls = ("jaxflow", "scan") + (("numpy",) if log2 <= args.numpy_max_log2_batch else ())
            group, ends = measure(name, impls, denoiser, y0, chunk, args, roofline, warm)
            _compare(group, ends)
            rows += group
    return rows


def chunk_sweep(args, roofline, rows) -> list[dict]:
    """Both flows at one batch size for larger chunk sizes than the main table's (whose
    rows at that batch are repeated here): jaxflow runs every chunk in blocks of a fixed
    size, the scan runs the whole chunk at once."""
    batch = 2**args.sweep_log2_batch
    y0 = make_starts(batch)
    out = []
    for name in DENOISERS:
        denoiser = make_denoiser(name)
        out += [
            r
            for r in rows
            if r["denoiser"] == name and r["batch"] == batch and r["impl"] != "numpy"
        ]
        for log2 in range(
            int(math.log2(args.chunk_size or batch)) + 2, args.sweep_log2_batch + 1, 2
        ):
            chunk = 2**log2 if 2**log2 < batch else None
            group, _ = measure(
                name, ("jaxflow", "scan"), denoiser, y0, chunk, args, roofline, set()
            )
            _compare(group, {})
            out += group
    return [{**row, "log2_chunk": int(math.log2(row["chunk_size"] or row["batch"]))} for row in out]


def probe(args) -> None:
    """One configuration in this (fresh) process: print its peak memory as JSON."""
    name, impl, log2 = args.probe[0], args.probe[1], int(args.probe[2])
    batch = 2**log2
    chunk = args.chunk_size if args.chunk_size and args.chunk_size < batch else None
    denoiser = make_denoiser(name)
    y0 = jax.block_until_ready(make_starts(batch))
    flow = jaxflow_flow if impl == "jaxflow" else scan_flow
    # A first call compiles everything the measured call runs (the chunk program and the
    # eager operations on the whole batch); then the run alone is measured, once the
    # first call's buffers are freed.
    jax.block_until_ready(flow(denoiser, y0, chunk, args.probe_steps))
    gc.collect()
    time.sleep(0.2)
    before = rss_bytes()
    exact = reset_peak_rss()
    out = jax.block_until_ready(flow(denoiser, y0, chunk, args.probe_steps))
    peak = peak_rss_bytes()
    print(
        json.dumps(
            {
                "denoiser": name,
                "impl": impl,
                "log2_batch": log2,
                "batch": batch,
                "chunk_size": chunk,
                "steps": args.probe_steps,
                "rss_before": before,
                "rss_peak": peak,
                "peak_reset": exact,
                "device_peak": device_peak_bytes(),
                "endpoint_bytes": endpoints(out).nbytes,
                "output_bytes": sum(x.nbytes for x in jax.tree.leaves(out)),
            }
        )
    )


def memory(args) -> list[dict]:
    """Peak memory of the `relu` flow through jaxflow per batch size, chunked and not,
    each configuration in a fresh process."""
    rows = []
    check = next(
        log2
        for log2 in range(args.memory_min_log2_batch, 64, args.log2_step)
        if 2**log2 > (args.chunk_size or 0)
    )
    for chunk, max_log2 in (
        (args.chunk_size, args.max_log2_batch),
        (None, args.unchunked_max_log2_batch),
    ):
        for log2 in range(args.memory_min_log2_batch, max_log2 + 1, args.log2_step):
            steps = [args.probe_steps]
            if chunk and log2 == check:
                steps.append(STEPS)  # check: the step count does not change peak memory
            for s in steps:
                cmd = [
                    sys.executable,
                    __file__,
                    "--probe",
                    "relu",
                    "jaxflow",
                    str(log2),
                    "--probe-steps",
                    str(s),
                    "--chunk-size",
                    str(chunk or 0),
                ]
                # glibc serves buffers below its adaptive mmap threshold from a heap that
                # keeps freed pages, hiding their reuse from RSS; a fixed threshold returns
                # every large buffer to the kernel as soon as it is freed.
                env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
                out = subprocess.run(
                    cmd, capture_output=True, text=True, check=True, env=env
                ).stdout
                row = json.loads(out.strip().splitlines()[-1])
                row["chunked"] = chunk is not None
                row["config"] = f"chunk_size={chunk}"
                row["flow_bytes"] = row["rss_peak"] - row["rss_before"]
                row["working_bytes"] = row["flow_bytes"] - row["output_bytes"]
                rows.append(row)
                mib = {k: row[k] / 2**20 for k in ("rss_peak", "flow_bytes", "output_bytes")}
                print(
                    f"memory relu jaxflow chunk {chunk or '-':>6} 2^{log2:<2d} steps {s:2d}: "
                    f"peak RSS {mib['rss_peak']:6.0f} MiB, flow {mib['flow_bytes']:6.0f} MiB, "
                    f"outputs {mib['output_bytes']:6.1f} MiB, flow - outputs "
                    f"{row['working_bytes'] / 2**20:6.0f} MiB",
                    flush=True,
                )
    return rows


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------


def targets(rows, mem) -> list[dict]:
    """The targets at batch >= 2^16, each with the measured value behind it."""
    big = [r for r in rows if r["log2_batch"] >= TARGET_LOG2_BATCH and r["impl"] == "jaxflow"]
    out = []
    if big:
        worst = min(big, key=lambda r: r["vs_scan"])
        each = ", ".join(f"{r['denoiser']} 2^{r['log2_batch']}: {r['vs_scan']:.2f}" for r in big)
        out.append(
            {
                "target": "jaxflow >= 0.9x scan (both denoisers)",
                "measured": f"worst {worst['vs_scan']:.3f} ({each})",
                "met": "yes" if worst["vs_scan"] >= 0.9 else "no",
            }
        )
        relu = [r for r in big if r["denoiser"] == "relu"]
        if relu:
            worst = min(relu, key=lambda r: r["frac_matmul"])
            each = ", ".join(
                f"2^{r['log2_batch']}: {r['frac_matmul']:.0%}, {r['frac_skinny']:.0%} of skinny"
                for r in relu
            )
            out.append(
                {
                    "target": "relu jaxflow >= 60% of square matmul FLOP/s",
                    "measured": f"worst {worst['frac_matmul']:.1%} ({each})",
                    "met": "yes" if worst["frac_matmul"] >= 0.6 else "no",
                }
            )
    chunked = [r for r in mem if r["chunked"] and r["steps"] != STEPS]
    if len(chunked) >= 2:
        working = [r["working_bytes"] / 2**20 for r in chunked]
        first, last = chunked[0], chunked[-1]
        growth = (last["output_bytes"] - first["output_bytes"]) / 2**20
        out.append(
            {
                # Flat: the working memory moves by less than 4 MiB (RSS noise) or a tenth
                # of what the outputs grow by.
                "target": "chunked peak memory flat in batch (beyond outputs)",
                "measured": f"flow - outputs {min(working):.0f} .. {max(working):.0f} MiB "
                f"over 2^{first['log2_batch']} .. 2^{last['log2_batch']}, while the outputs "
                f"grow by {growth:.0f} MiB",
                "met": "yes" if max(working) - min(working) <= max(4.0, 0.1 * growth) else "no",
            }
        )
    return out


def report(info, args, roofline, rows, sweep, mem) -> str:
    mib = lambda b: None if b is None else b / 2**20
    cols = [
        ("denoiser", "denoiser", ""),
        ("impl", "impl", ""),
        ("log2_batch", "log2 batch", ""),
        ("chunk_size", "chunk", ""),
        ("best_s", "run s", ".3f"),
        ("compile_s", "compile s", ".2f"),
        ("traj_steps_per_s", "traj x steps / s", ".3g"),
        ("gflops", "GFLOP/s", ".1f"),
        ("frac_matmul", "% matmul", ".1%"),
        ("frac_skinny", "% skinny", ".1%"),
        ("vs_scan", "vs scan", ".3f"),
        ("max_abs_diff_vs_scan", "max diff vs scan", ".1e"),
    ]
    lines = [
        "# Probability-flow throughput",
        "",
        f"Machine: {describe(info)}.",
        "",
        f"Problem: EDM probability flow, sigma {SIGMA_MAX} -> {SIGMA_MIN}, {STEPS} Heun steps (2 "
        f"denoiser evaluations each) on the geometric grid, float32, d = {D}. `minnorm`: "
        f"MinNormOrthogonal on N = {D} points, {flops_per_evaluation('minnorm')} FLOPs per "
        f"evaluation (4Nd); `relu`: ShallowReLU with K = {WIDTH}, {flops_per_evaluation('relu')} "
        f"FLOPs per evaluation (4dK + 2d^2). Batches above the chunk size ({args.chunk_size}) "
        "run in chunks, jaxflow and scan alike. Run in "
        f"{'quick' if args.quick else 'full'} mode, batches 2^{args.min_log2_batch} .. "
        f"2^{args.max_log2_batch}, in {args.elapsed_s:.0f} s.",
        "",
        "## Targets (batch >= 2^16)",
        "",
        markdown_table(
            targets(rows, mem),
            [("target", "target", ""), ("measured", "measured", ""), ("met", "met", "")],
        ),
        "",
        "## Matmul roofline (float32)",
        "",
        markdown_table(
            roofline["rows"],
            [
                ("product", "product", ""),
                ("m", "m", ""),
                ("k", "k", ""),
                ("n", "n", ""),
                ("best_s", "best s", ".2e"),
                ("gflops", "GFLOP/s", ".1f"),
            ],
        ),
        "",
        "## Throughput",
        "",
        "`run s`: best of the calls after the first (of all calls where the chunk program "
        "was compiled at a smaller batch). `compile s`: first call minus best, where the "
        "first call compiled (`-`: nothing to compile). `% matmul`: achieved over the "
        "square matmul's FLOP/s; `% skinny`: over the skinny pair's. `vs scan`: the scan's "
        "time over this row's (above 1 is faster). `max diff vs scan`: largest endpoint "
        "difference.",
        "",
        markdown_table(rows, cols),
    ]
    if sweep:
        lines += [
            "",
            f"## Chunk size (batch 2^{args.sweep_log2_batch})",
            "",
            "jaxflow runs each chunk in blocks of a fixed number of rows "
            f"(`jaxflow.flows.block_size()` = {block_size()}); the scan runs the whole "
            "chunk at once.",
            "",
            markdown_table(
                sweep,
                [
                    ("denoiser", "denoiser", ""),
                    ("impl", "impl", ""),
                    ("log2_chunk", "log2 chunk", ""),
                    ("best_s", "run s", ".3f"),
                    ("gflops", "GFLOP/s", ".1f"),
                    ("frac_matmul", "% matmul", ".1%"),
                    ("vs_scan", "vs scan", ".3f"),
                ],
            ),
        ]
    if mem:
        lines += [
            "",
            "## Peak memory (`relu` through jaxflow, each in a fresh process)",
            "",
            "`flow`: peak RSS during one call minus RSS before it (after a call that compiled "
            "the same programs; high-water mark reset just before). `outputs`: the "
            "`FlowSolution`'s arrays, of which the endpoints are batch x d x 4 bytes. "
            f"Measured with {args.probe_steps} steps: the solver loop reuses its buffers, so "
            f"the step count does not change peak memory (see the {STEPS}-step row).",
            "",
        ]
        mem_rows = [
            {
                **r,
                "flow": mib(r["flow_bytes"]),
                "outputs": mib(r["output_bytes"]),
                "ends": mib(r["endpoint_bytes"]),
                "working": mib(r["working_bytes"]),
                "peak": mib(r["rss_peak"]),
                "device": mib(r["device_peak"]),
            }
            for r in mem
        ]
        lines.append(
            markdown_table(
                mem_rows,
                [
                    ("config", "call", ""),
                    ("log2_batch", "log2 batch", ""),
                    ("steps", "steps", ""),
                    ("peak", "peak RSS MiB", ".0f"),
                    ("flow", "flow MiB", ".0f"),
                    ("ends", "endpoints MiB", ".1f"),
                    ("outputs", "outputs MiB", ".1f"),
                    ("working", "flow - outputs MiB", ".0f"),
                    ("device", "device peak MiB", ".0f"),
                ],
            )
        )
    return "\n".join(lines)


def parse(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, about a minute")
    parser.add_argument("--min-log2-batch", type=int, default=10)
    parser.add_argument("--max-log2-batch", type=int, help="default 20 (14 with --quick)")
    parser.add_argument("--log2-step", type=int, default=2)
    parser.add_argument(
        "--chunk-size", type=int, help="default 2^12 on CPU, 2^18 on GPU; 0 for none"
    )
    parser.add_argument(
        "--numpy-max-log2-batch", type=int, help="largest NumPy batch; default 14 (10 with --quick)"
    )
    parser.add_argument(
        "--unchunked-max-log2-batch", type=int, help="largest unchunked memory probe; default 18"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed calls after the first; the best is kept"
    )
    parser.add_argument(
        "--budget",
        type=float,
        help="seconds of repeats per configuration; default 10 (2 with --quick)",
    )
    parser.add_argument(
        "--matmul-size", type=int, help="square matmul side; default 4096 (2048 with --quick)"
    )
    parser.add_argument(
        "--sweep-log2-batch", type=int, help="chunk-size sweep batch; default 16 (14 with --quick)"
    )
    parser.add_argument(
        "--no-sweep", action="store_true", help="skip the chunk-size sweep (skipped with --quick)"
    )
    parser.add_argument(
        "--memory-min-log2-batch",
        type=int,
        help="smallest memory probe; default 10 (12 with --quick)",
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory probes")
    parser.add_argument("--probe-steps", type=int, default=2, help="steps in the memory probes")
    parser.add_argument(
        "--out", type=pathlib.Path, help="results folder; default benchmarks/results"
    )
    parser.add_argument(
        "--probe", nargs=3, metavar=("DENOISER", "IMPL", "LOG2_BATCH"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    quick, cpu = args.quick, jax.default_backend() == "cpu"
    defaults = {
        "max_log2_batch": 14 if quick else 20,
        # On CPU: jaxflow's block size, at which the scan's state and hidden activations
        # (8 MiB) stay in the last-level cache too; a GPU wants large chunks.
        "chunk_size": 2**12 if cpu else 2**18,
        "numpy_max_log2_batch": 10 if quick else 14,
        "unchunked_max_log2_batch": 14 if quick else 18,
        "budget": 2.0 if quick else 10.0,
        "matmul_size": 2048 if quick else 4096,
        "sweep_log2_batch": 14 if quick else 16,
        "memory_min_log2_batch": 12 if quick else args.min_log2_batch,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.chunk_size = args.chunk_size or None
    args.no_sweep = args.no_sweep or quick
    args.unchunked_max_log2_batch = min(args.unchunked_max_log2_batch, args.max_log2_batch)
    args.sweep_log2_batch = min(args.sweep_log2_batch, args.max_log2_batch)
    return args


def main(argv=None) -> None:
    args = parse(argv)
    if args.probe:
        return probe(args)
    info = machine()
    print(describe(info), flush=True)
    start = time.perf_counter()
    roofline = matmul_roofline(args)
    rows = throughput(args, roofline)
    sweep = [] if args.no_sweep else chunk_sweep(args, roofline, rows)
    mem = [] if args.no_memory else memory(args)
    args.elapsed_s = time.perf_counter() - start
    data = {
        "machine": info,
        "settings": {
            k: (str(v) if isinstance(v, pathlib.Path) else v)
            for k, v in vars(args).items()
            if k != "probe"
        },
        "problem": {
            "d": D,
            "width": WIDTH,
            "steps": STEPS,
            "sigma_max": SIGMA_MAX,
            "sigma_min": SIGMA_MIN,
            "dtype": "float32",
            "solver": "heun",
            "schedule": "geometric",
            "flops_per_evaluation": {n: flops_per_evaluation(n) for n in DENOISERS},
            "flops_per_trajectory": {n: flops_per_trajectory(n) for n in DENOISERS},
        },
        "matmul": roofline["rows"],
        "throughput": rows,
        "chunk_sweep": sweep,
        "memory": mem,
        "targets": targets(rows, mem),
    }
    kwargs = {} if args.out is None else {"out": args.out}
    write_results("flows", data, report(info, args, roofline, rows, sweep, mem), **kwargs)
    print(f"done in {args.elapsed_s:.0f} s")


if __name__ == "__main__":
    main()

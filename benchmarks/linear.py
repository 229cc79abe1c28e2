"""The reference sweep of [H]'s relative distance, timed against a straightforward NumPy
implementation of the same per-cell computation.

The sweep ([H], Section 4; docs/models.md#relative-distance): d = 100, p = N(10 1, I), T = 2,
lambda = 1, a reference sample of N_O = 10^4 points, R = 300 repetitions, n in {25, 50, 75,
100}, both covariance conventions: 1200 (repetition, n) cells, each with two values of Delta =
D(q, p_S) - D(q, p_O).

- `jaxflow`: `jaxflow.studies.relative_distance_sweep` as a user calls it: every
  term of Delta computed, in log space, the reference sample's own pairwise term
  included (its Gram matmul in float32 under a run-time error bound, any repetition
  whose sign the bound leaves open recomputed in float64); the reference arithmetic
  alone; and both arithmetics in one program (`arithmetic=("exact", "reference")`,
  the reference sample's pair sums formed once for both), against the two run apart.
- `numpy`: the per-cell computation written the way a reference implementation does
  it, one repetition and one n at a time: draw the data, fit W by a pseudo-inverse,
  then for each convention each distance on its own as its kernel self term (all pairs,
  explicit differences, 25 x 25 blocks) minus twice its cross term (an explicit
  100 x 100 inverse per point), in float64, and Delta as their difference. It is far
  too slow to run 1200 times: a few cells are timed and the sweep extrapolated from
  their mean (stated in the output).

- the whole command, `jaxflow run linear-transition` (both arithmetics, the bootstrap,
  the figures) in a fresh process, on one CPU device and on one per core.

- compile time against the grid: the sweep compiles one program per configuration,
  whose shapes depend on the largest n and not on the grid; the first call minus the
  second (R = 2) for grids of 4, 8 and 16 sizes up to n = 100 must stay flat.

Usage:

    python benchmarks/linear.py              # full: the whole JAX sweep twice, 2 NumPy cells
    python benchmarks/linear.py --quick      # R = 30 and one NumPy cell, part of it extrapolated

Writes benchmarks/results/linear.json and benchmarks/results/linear.md.
"""

# NumPy first: its OpenBLAS then keeps its default threads for the NumPy baseline
# (jaxflow makes the OpenBLAS behind JAX's LAPACK calls single-threaded on import).
import numpy as np  # isort: skip

import argparse
import os
import subprocess
import sys
import tempfile
import time

import jax
import jax.random as jr


jax.config.update("jax_enable_x64", True)

import jaxflow  # noqa: E402
from _common import describe, machine, markdown_table, write_results  # noqa: E402


D, N_O, M, S, T, LAM = 100, 10_000, 10.0, 1.0, 2.0, 1.0
NS = (25, 50, 75, 100)
CONVENTIONS = ("consistent", "reference")
BLOCK = 25


# ---------------------------------------------------------------------------------------
# The NumPy baseline.
# ---------------------------------------------------------------------------------------


def _self_term(x, eps2, fraction=1.0):
    """(1/N^2) sum_{i,j} N(x_i; x_j, 2 eps^2 I), in 25 x 25 blocks of explicit
    differences. With `fraction < 1` only that share of the row blocks is summed and the
    sum scaled up (timing only)."""
    n, d = x.shape
    norm = (4 * np.pi * eps2) ** (-d / 2)
    starts = range(0, n, BLOCK)
    rows = list(starts)[: max(1, round(fraction * len(starts)))]
    total = 0.0
    for i in rows:
        for j in starts:
            diff = x[i : i + BLOCK, None, :] - x[None, j : j + BLOCK, :]
            total += np.exp(-(diff**2).sum(-1) / (4 * eps2)).sum()
    return total * (len(starts) / len(rows)) * norm / (n * n)


def _cross_term(x, mean, cov, eps2):
    """(1/N) sum_i N(x_i; mean, cov + eps^2 I), one explicit inverse per point."""
    n, d = x.shape
    c = cov + eps2 * np.eye(d)
    total = 0.0
    for xi in x:
        inv = np.linalg.inv(c)
        sign, logdet = np.linalg.slogdet(c)
        y = xi - mean
        total += np.exp(-0.5 * (y @ inv @ y) - 0.5 * (d * np.log(2 * np.pi) + logdet))
    return total / n


def numpy_cell(rng, n, fraction=1.0):
    """Delta for both conventions of one (repetition, n) cell, and the cell's time in
    seconds (with `fraction < 1`, the reference sample's self term is timed on that share
    of its blocks and its time scaled up)."""
    start = time.perf_counter()
    extra = 0.0
    x0 = M + S * rng.standard_normal((n, D))
    a, c2 = np.exp(-T), LAM * np.exp(-2 * T) * (1 - np.exp(-2 * T))
    xt = a * x0 + np.sqrt(c2) * rng.standard_normal((n, D))
    ref = M + S * rng.standard_normal((N_O, D))
    w = (np.linalg.pinv(xt - xt.mean(0)) @ (x0 - x0.mean(0))).T
    b = x0.mean(0) - w @ xt.mean(0)
    v = a**2 * x0.var(0, ddof=1).mean() + c2
    mean = b + a * w @ x0.mean(0)
    deltas = []
    for convention in CONVENTIONS:
        cov = v * (w @ w.T if convention == "consistent" else w.T @ w)
        distances = []
        for x in (x0, ref):
            eps2 = S**2 * len(x) ** (-2 / D)
            tick = time.perf_counter()
            self_term = _self_term(x, eps2, fraction if x is ref else 1.0)
            if x is ref:
                extra += (time.perf_counter() - tick) * (1 / fraction - 1)
            distances.append(self_term - 2 * _cross_term(x, mean, cov, eps2))
        deltas.append(distances[0] - distances[1])
    return deltas, time.perf_counter() - start + extra


# ---------------------------------------------------------------------------------------
# The JAX sweep.
# ---------------------------------------------------------------------------------------


def jax_sweep(repetitions, arithmetic="exact", gram="float32"):
    import jax.numpy as jnp

    return jaxflow.studies.relative_distance_sweep(
        NS,
        key=jr.key(0),
        d=D,
        repetitions=repetitions,
        reference_size=N_O,
        m=M,
        s=S,
        T=T,
        lam=LAM,
        arithmetic=arithmetic,
        gram_dtype=jnp.float32 if gram == "float32" else None,
        chunk_size=10,
    )


def grid_of(sizes: int) -> tuple[int, ...]:
    """`sizes` training-set sizes evenly spaced up to the largest of `NS`."""
    return tuple(round(max(NS) * (g + 1) / sizes) for g in range(sizes))


def compile_times(grids=(4, 8, 16), repetitions=2):
    """Compile and run time of the exact sweep per grid length: the first call (compiles
    and runs) minus the second (runs), R = `repetitions` in one chunk."""
    rows = []
    for sizes in grids:
        ns = grid_of(sizes)
        sweep = lambda: jaxflow.studies.relative_distance_sweep(
            ns,
            key=jr.key(0),
            d=D,
            repetitions=repetitions,
            reference_size=N_O,
            m=M,
            s=S,
            T=T,
            lam=LAM,
            chunk_size=repetitions,
        )
        _, first = _timed(sweep)
        _, run = _timed(sweep)
        rows.append(
            {
                "grid": sizes,
                "largest_n": max(ns),
                "compile_s": max(first - run, 0.0),
                "run_s": run,
                "repetitions": repetitions,
            }
        )
        print(f"grid of {sizes}: compile {first - run:.1f} s, run {run:.2f} s", flush=True)
    return rows


def command_times(quick: bool, runs: int = 2) -> list[dict]:
    """`jaxflow run linear-transition` as a user runs it, in a fresh process (start-up,
    compilation, both arithmetics, the bootstrap, the table and the figures): on one CPU
    device and on one per core (`--cpu-devices`), or on an accelerator; `runs` times
    each, in turn, and the best counts (as for every other time here: a whole minute on a
    shared machine catches other jobs' bursts)."""
    counts = [None]
    if jax.default_backend() == "cpu" and (os.cpu_count() or 1) > 1:
        counts.append(os.cpu_count())
    walls = {count: [] for count in counts}
    for _ in range(runs):
        for count in counts:
            with tempfile.TemporaryDirectory() as folder:
                command = [sys.executable, "-m", "jaxflow.cli", "run", "linear-transition"]
                command += ["--out", f"{folder}/out", "--no-progress"]
                command += ["--quick"] if quick else []
                command += [] if count is None else ["--cpu-devices", str(count)]
                start = time.perf_counter()
                subprocess.run(command, check=True, capture_output=True)
                walls[count].append(time.perf_counter() - start)
            print(
                f"jaxflow run linear-transition, {count or 1} device(s): {walls[count][-1]:.1f} s",
                flush=True,
            )
    return [
        {
            "cpu_devices": count or 1,
            "wall_s": min(times),
            "runs": ", ".join(f"{t:.1f}" for t in times),
            "quick": quick,
        }
        for count, times in walls.items()
    ]


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    jax.block_until_ready(jax.tree.leaves(out))
    return out, time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="R = 30, one NumPy cell (partly extrapolated)"
    )
    parser.add_argument(
        "--repetitions", type=int, default=None, help="repetitions R (default 300; 30 with --quick)"
    )
    parser.add_argument(
        "--numpy-cells", type=int, default=None, help="NumPy cells to time (default 2; 1 quick)"
    )
    parser.add_argument(
        "--no-reference", action="store_true", help="skip the reference arithmetic's sweep"
    )
    parser.add_argument(
        "--gram64", action="store_true", help="also time the sweep with a float64 Gram matrix"
    )
    parser.add_argument(
        "--compile-only", action="store_true", help="only the compile time against the grid"
    )
    args = parser.parse_args(argv)
    repetitions = args.repetitions or (30 if args.quick else 300)
    numpy_cells = args.numpy_cells or (1 if args.quick else 2)
    fraction = 0.05 if args.quick else 1.0
    cells = repetitions * len(NS)
    info = machine()
    print(describe(info))
    compiled = compile_times()
    compile_columns = [
        ("grid", "sizes in the grid", ""),
        ("largest_n", "largest n", ""),
        ("compile_s", "compile (s)", ".3g"),
        ("run_s", f"run, R = {compiled[0]['repetitions']} (s)", ".3g"),
    ]
    compile_section = [
        "## Compile time against the grid",
        "The exact sweep (float32 Gram) at d = 100, N_O = 10^4: first call minus second. "
        "One program per configuration, its shapes set by the largest n.",
        markdown_table(compiled, compile_columns),
    ]
    if args.compile_only:
        markdown = "\n\n".join(
            [
                "# Reference sweep of the relative distance (`benchmarks/linear.py`)",
                f"Machine: {describe(info)}",
                *compile_section,
            ]
        )
        write_results("linear_compile", {"machine": info, "compile": compiled}, markdown)
        return 0

    runs = {"jaxflow exact": ("exact", "float32")}
    if args.gram64:
        runs["jaxflow exact, float64 Gram"] = ("exact", "float64")
    if not args.no_reference:
        runs["jaxflow reference arithmetic"] = ("reference", "float32")
        runs["jaxflow both arithmetics, one program"] = (("exact", "reference"), "float32")
    rows, reproduced = [], []
    for name, (arithmetic, gram) in runs.items():
        # First call: compilation plus one run; the second, the run alone.
        _, first = _timed(lambda: jax_sweep(repetitions, arithmetic, gram))
        sweeps, best = _timed(lambda: jax_sweep(repetitions, arithmetic, gram))
        if isinstance(arithmetic, str):
            sweeps = {arithmetic: sweeps}
        rows.append(
            {
                "implementation": name,
                "cells": cells,
                "measured_cells": cells,
                "time_s": best,
                "per_cell_ms": 1e3 * best / cells,
                "compile_s": max(first - best, 0.0),
                "recomputed": sum(sweep.recomputed for sweep in sweeps.values()),
                "note": "whole sweep, best of 2 calls",
            }
        )
        print(f"{name}: {best:.1f} s for {cells} cells (first call {first:.1f} s)", flush=True)
        if not isinstance(arithmetic, str):
            continue  # the same numbers as the single-arithmetic sweeps (tested)
        prob = sweeps[arithmetic].probability()
        for g, n in enumerate(NS):
            for c, convention in enumerate(CONVENTIONS):
                reproduced.append(
                    {
                        "arithmetic": arithmetic,
                        "convention": convention,
                        "n": n,
                        "p_positive": float(prob.fraction[g, c]),
                        "p_lower": float(prob.lower[g, c]),
                        "p_upper": float(prob.upper[g, c]),
                        "uncertain": int(prob.uncertain[g, c]),
                    }
                )

    rng = np.random.default_rng(0)
    times = []
    for k in range(numpy_cells):
        n = NS[(k * (len(NS) - 1)) // max(numpy_cells - 1, 1)]  # spread over the grid
        _, seconds = numpy_cell(rng, n, fraction)
        times.append(seconds)
        print(f"numpy cell n={n}: {times[-1]:.1f} s", flush=True)
    per_cell = float(np.mean(times))
    note = f"mean of {numpy_cells} timed cell(s), extrapolated to {cells}"
    if fraction < 1:
        note += f"; the O self term timed on {fraction:.0%} of its blocks and its time scaled"
    rows.append(
        {
            "implementation": "numpy per cell",
            "cells": cells,
            "measured_cells": numpy_cells,
            "time_s": per_cell * cells,
            "per_cell_ms": 1e3 * per_cell,
            "compile_s": 0.0,
            "recomputed": None,
            "note": note,
        }
    )
    exact = rows[0]["time_s"]
    for row in rows:
        row["relative_to_jaxflow"] = row["time_s"] / exact
    commands = command_times(args.quick)
    command = commands[0]["wall_s"]
    target = {"command_s": command, "command_under_60_s": command < 60.0, "exact_sweep_s": exact}
    times = {row["implementation"]: row["time_s"] for row in rows}
    joint = times.get("jaxflow both arithmetics, one program")
    apart = times["jaxflow exact"] + times.get("jaxflow reference arithmetic", float("nan"))
    sharing = (
        []
        if joint is None
        else [
            f"Both arithmetics in one program: {joint:.1f} s against {apart:.1f} s for the "
            f"two sweeps apart ({joint / apart:.2f}x): the reference sample's pair sums are "
            "formed once for both."
        ]
    )

    columns = [
        ("implementation", "implementation", ""),
        ("cells", "cells", ""),
        ("measured_cells", "timed cells", ""),
        ("time_s", "sweep time (s)", ".4g"),
        ("per_cell_ms", "per cell (ms)", ".4g"),
        ("compile_s", "compile (s)", ".3g"),
        ("relative_to_jaxflow", "x jaxflow", ".3g"),
        ("recomputed", "float64 redone", ""),
        ("note", "note", ""),
    ]
    p_columns = [
        ("arithmetic", "arithmetic", ""),
        ("convention", "convention", ""),
        ("n", "n", ""),
        ("p_positive", "P(Delta > 0)", ".3f"),
        ("p_lower", "Wilson low", ".3f"),
        ("p_upper", "Wilson high", ".3f"),
        ("uncertain", "uncertain signs", ""),
    ]
    markdown = "\n\n".join(
        [
            "# Reference sweep of the relative distance (`benchmarks/linear.py`)",
            f"Machine: {describe(info)}",
            f"d = {D}, N_O = {N_O}, R = {repetitions}, n in {NS}, both conventions"
            + (" (quick run)" if args.quick else ""),
            markdown_table(rows, columns),
            "## The whole command",
            "`jaxflow run linear-transition"
            + (" --quick" if args.quick else "")
            + "` in a fresh process: start-up, compilation, both arithmetics on the grid "
            "above, the bootstrap of n*, the distances past d, the table and the figures; "
            "twice per device count, in turn.",
            markdown_table(
                commands,
                [
                    ("cpu_devices", "CPU devices (--cpu-devices)", ""),
                    ("wall_s", "best wall (s)", ".3g"),
                    ("runs", "each run, in turn (s)", ""),
                ],
            ),
            "Target (the whole command on the reference grid, < 60 s): "
            + (
                f"{'met' if target['command_under_60_s'] else 'not met'} ({command:.1f} s)."
                if not args.quick
                else "not measured (a quick run)."
            ),
            *sharing,
            *compile_section,
            "## P(Delta > 0) reproduced",
            markdown_table(reproduced, p_columns),
        ]
    )
    data = {
        "machine": info,
        "d": D,
        "reference_size": N_O,
        "repetitions": repetitions,
        "ns": NS,
        "quick": args.quick,
        "rows": rows,
        "target": target,
        "reproduced": reproduced,
        "compile": compiled,
        "commands": commands,
    }
    write_results("linear", data, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())

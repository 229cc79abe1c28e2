"""Min-norm training throughput of `jaxflow.training.train_min_norm`: the whole grid of
noise levels in one compiled program, side by side with the same program called one level
after another from Python, a plain PyTorch loop (when PyTorch is importable), and the
machine's float64 matmul FLOP/s.

The problem is zeno-training's default grid (docs/conventions.md#zeno-training): d = 30,
N = 30 orthogonal points and the origin (31 training points), M = 8 noisy copies each,
10 geometric levels from sigma = 4 to 0.02, width K = 128, the augmented Lagrangian with
its default settings, float64, full batch. Only the number of Adam steps is reduced
(`--steps`, default 2000 per level instead of up to 40 000) and the stopping rule is off,
so that every level takes exactly that many steps and every way does the same work; a
step costs the same early and late in training.

FLOPs are counted from the matrix products of one Adam step only, 2 per multiply-add,
with P = N M training copies (rows), d inputs and K units:

- forward: y w^T (2PdK), relu(.) a (2PKd), y V^T (2Pd^2);
- backward: the gradients of a and of the hidden units through relu(.) a (2PKd each),
  of w through y w^T (2PdK; the inputs need none), of V (2Pd^2);

10 PdK + 4 Pd^2 per step (10.4 MFLOP at the defaults). The residual evaluated once per
outer iteration, the multiplier updates, Adam's elementwise update and the diagnostics
are not counted.

Usage (see benchmarks/README.md):

    python benchmarks/training.py               # the default grid, 2000 steps per level
    python benchmarks/training.py --quick       # d = N = 8, 4 levels, 500 steps

Writes benchmarks/results/training.json and benchmarks/results/training.md.
"""

import argparse
import math
import pathlib
import time

import jax


jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import jax.random as jr  # noqa: E402
import jax.tree_util as jtu  # noqa: E402
import jaxflow as jf  # noqa: E402
import numpy as np  # noqa: E402
from _common import (  # noqa: E402
    describe,
    device_peak_bytes,
    machine,
    markdown_table,
    peak_rss_bytes,
    square_matmul,
    timeit,
    timeit_together,
    write_results,
)
from jaxflow.training import MinNormTraining, train_min_norm  # noqa: E402
from jaxflow.training._minnorm import _prepare, _train_all  # noqa: E402


DTYPE = jnp.float64


def problem(args):
    """Training points (the origin and N orthogonal points), levels, copies, settings."""
    x = np.asarray(jf.data.orthogonal(args.n, args.d, dtype=DTYPE).points)
    points = jnp.asarray(np.concatenate([np.zeros((1, args.d)), x]))
    sigmas = jf.flows.Geometric().grid(
        jnp.asarray(args.sigma_max, DTYPE), jnp.asarray(args.sigma_min, DTYPE), args.levels - 1
    )
    copies = jf.data.forward_ve(points, sigmas, key=jr.key(1), draws=args.copies)
    # tol far below any residual reached: every level takes exactly `steps` steps.
    cfg = MinNormTraining(
        width=args.width, copies=args.copies, steps=args.steps, inner_steps=200, tol=1e-300
    )
    return points, sigmas, copies, cfg


def flops_per_step(p: int, d: int, k: int) -> int:
    return 10 * p * d * k + 4 * p * d * d


# --------------------------------------------------------------------------------------
# The implementations
# --------------------------------------------------------------------------------------


def level_args(args_all, level):
    """The arguments of the one-program trainer restricted to one level (same key)."""
    cfg, points, sigmas, copies, ref, sums, keys = args_all
    sl = slice(level, level + 1)
    return (cfg, points, sigmas[sl], copies[sl], ref, sums, keys[sl])


def grid_program(args_all):
    """The library's program: every level inside one compiled call."""
    # `progress` passed as the library passes it, so that both share compiled programs.
    return _train_all(*args_all, progress=False)


def level_loop(args_all):
    """The same compiled per-level program (one level's optax steps in a while loop),
    called from Python once per level, one after another."""
    levels = args_all[2].shape[0]
    return [_train_all(*level_args(args_all, level), progress=False) for level in range(levels)]


def torch_loop(points, copies, cfg, levels, threads, budget_s=math.inf):
    """A plain PyTorch training loop of the same networks and the same augmented
    Lagrangian (Adam with the exponentially decaying learning rate, multipliers and
    penalty every `inner_steps` steps), one level after another, float64, full batch:
    what one would otherwise write. On the GPU when JAX runs on one and PyTorch sees it,
    else on `threads` CPU threads.

    Stops at the first multiplier update past `budget_s` seconds (a step costs the same
    early and late in training). Returns the final residual of each level trained, the
    number of Adam steps taken, and the time of each outer iteration (`inner_steps` Adam
    steps and a multiplier update)."""
    import torch

    torch.set_num_threads(threads)
    device = "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"
    as_tensor = lambda a: torch.tensor(np.asarray(a), device=device)  # noqa: E731
    x = as_tensor(points)
    start, taken, out, outer = time.perf_counter(), 0, [], []
    tick = start
    for level in range(levels):
        y = as_tensor(copies[level]).reshape(-1, x.shape[1])
        target = x.repeat_interleave(copies.shape[2], dim=0)
        n_rows, d = y.shape
        g = torch.Generator(device).manual_seed(level)
        normal = lambda *shape: torch.randn(  # noqa: E731
            *shape, generator=g, dtype=torch.float64, device=device
        )
        w = normal(cfg.width, d) / math.sqrt(d)
        a = normal(cfg.width, d) / math.sqrt(cfg.width)
        j = torch.randint(0, n_rows, (cfg.width,), generator=g, device=device)
        b = -(w * y[j]).sum(1)
        v = torch.zeros(d, d, dtype=torch.float64, device=device)
        c = x.mean(0)
        params = [t.clone().requires_grad_(True) for t in (a, w, b, v, c)]
        lr0, lr1 = cfg.learning_rate
        opt = torch.optim.Adam(params, lr=lr0)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: (lr1 / lr0) ** min(s / cfg.steps, 1.0)
        )
        lam = torch.zeros_like(y)
        mu, res = cfg.penalty, math.inf
        for step in range(cfg.steps):
            a_, w_, b_, v_, c_ = params
            h = torch.relu(y @ w_.T + b_) @ a_ + y @ v_.T + c_
            r = h - target
            cost = 0.5 * (a_.square().sum() + w_.square().sum())
            loss = cost + (lam * r).sum() + 0.5 * mu * r.square().sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            taken += 1
            if (step + 1) % cfg.inner_steps == 0:
                with torch.no_grad():
                    a_, w_, b_, v_, c_ = params
                    r = torch.relu(y @ w_.T + b_) @ a_ + y @ v_.T + c_ - target
                    new = float(r.norm(dim=1).max())
                    lam = lam + mu * r
                    if new > cfg.stall * res:
                        mu = min(2 * mu, cfg.penalty_max)
                    res = new
                now = time.perf_counter()
                outer.append(now - tick)
                tick = now
                if now - start > budget_s:
                    return np.array(out + [res]), taken, outer
        out.append(res)
    return np.array(out), taken, outer


# --------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------


def matmul_rates(p, d, k, square_n) -> dict:
    """Float64 matmul FLOP/s: a large square product, and the pair of products one
    network evaluation makes on the training copies, (P, d) x (d, K) then (P, K) x (K, d),
    chained 64 times inside one `jit` so that dispatch does not count."""
    links = 64
    w = jr.normal(jr.key(4), (d, k), DTYPE) / math.sqrt(k)
    x = jr.normal(jr.key(5), (p, d), DTYPE)

    @jax.jit
    def pair(x, w):
        return jax.lax.fori_loop(0, links, lambda i, x: (x @ w) @ w.T, x)

    timing = timeit(lambda: pair(x, w), repeats=5)
    name = f"pair ({p}x{d})(x{k}) x {links}"
    gflops = links * 4 * p * d * k / timing.best_s / 1e9
    print(f"matmul {name}: {gflops:.1f} GFLOP/s", flush=True)
    rows = [
        square_matmul(square_n, DTYPE),
        {"product": name, "best_s": timing.best_s, "gflops": gflops},
    ]
    return {"rows": rows, "square": rows[0]["gflops"], "pair": rows[1]["gflops"]}


def max_network_difference(grid, loop) -> float:
    nets = grid[0]
    worst = 0.0
    for level, (net, _, _) in enumerate(loop):
        for x, y in zip(jtu.tree_leaves(nets), jtu.tree_leaves(net)):
            worst = max(worst, float(jnp.max(jnp.abs(x[level] - y[0]))))
    return worst


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="d = N = 8, 4 levels, 500 steps")
    parser.add_argument("--steps", type=int, help="Adam steps per level (default 2000)")
    parser.add_argument("--levels", type=int, help="noise levels (default 10)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls after the first")
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch even if present")
    parser.add_argument(
        "--torch-budget",
        type=float,
        help="seconds after which a PyTorch loop stops and its time per step is "
        "extrapolated (default 60; 20 with --quick)",
    )
    parser.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    args = parser.parse_args(argv)
    quick = args.quick
    args.d = args.n = 8 if quick else 30
    args.levels = args.levels or (4 if quick else 10)
    args.steps = args.steps or (500 if quick else 2000)
    args.torch_budget = args.torch_budget or (20.0 if quick else 60.0)
    args.sigma_max, args.sigma_min = 4.0, 0.02
    args.width, args.copies = 128, 8

    info = machine()
    backend = info["backend"]
    print(describe(info), flush=True)
    points, sigmas, copies, cfg = problem(args)
    p = points.shape[0] * args.copies
    per_step_flops = flops_per_step(p, args.d, args.width)
    total_flops = per_step_flops * args.steps * args.levels
    rates = matmul_rates(p, args.d, args.width, 1024 if quick else 2048)

    kind, args_all = _prepare(points, sigmas, cfg, jr.key(0), copies)
    del kind
    timings = timeit_together(
        {"grid": lambda: grid_program(args_all), "loop": lambda: level_loop(args_all)},
        repeats=args.repeats,
    )
    diff = max_network_difference(grid_program(args_all), level_loop(args_all))
    # The public call end to end (host preparation: the reference, the subset sums), its
    # program compiled above.
    start = time.perf_counter()
    fit = jax.block_until_ready(train_min_norm(points, sigmas, cfg, key=jr.key(0), copies=copies))
    public_s = time.perf_counter() - start
    residual = np.asarray(fit.diagnostics.residual_train)
    # Before PyTorch runs: the JAX ways' peak (the process's, compilation included).
    peak_rss, device_peak = peak_rss_bytes(), device_peak_bytes()

    rows = []
    names = {
        "grid": "jaxflow: all levels in one program",
        "loop": "the same program, one level per call",
    }
    for key, label in names.items():
        t = timings[key]
        rows.append(
            {
                "way": label,
                "run_s": t.best_s,
                "compile_s": t.compile_s,
                "repeats": t.repeats,
                "steps_timed": args.steps * args.levels,
                "ms_per_step": 1e3 * t.best_s / (args.steps * args.levels),
                "gflops": total_flops / t.best_s / 1e9,
            }
        )
    torch_rows = []
    if not args.no_torch:
        try:
            import torch
        except ImportError:
            print("PyTorch is not importable: its loop is skipped.", flush=True)
        else:
            # One thread as well as one per core: on a loaded machine PyTorch's threads
            # wait for each other at every one of a step's small operations.
            gpu = backend != "cpu" and torch.cuda.is_available()
            for threads in [1] if gpu else sorted({1, info["cores"]}):
                _, taken, outer = torch_loop(
                    points, copies, cfg, args.levels, threads, args.torch_budget
                )
                # Its fastest outer iteration: the best of many, as the JAX ways' best call.
                per_step = min(outer) / cfg.inner_steps
                torch_rows.append(
                    {
                        "way": "PyTorch loop, "
                        + ("GPU" if gpu else f"{threads} thread" + "s" * (threads > 1)),
                        "run_s": per_step * args.steps * args.levels,
                        "compile_s": None,
                        "repeats": 1,
                        "steps_timed": taken,
                        "ms_per_step": 1e3 * per_step,
                        "gflops": per_step_flops / per_step / 1e9,
                    }
                )
            rows += torch_rows
    grid = rows[0]
    for r in rows:
        r["frac_square"] = r["gflops"] / rates["square"]
        r["frac_pair"] = r["gflops"] / rates["pair"]
        r["grid_speedup"] = r["run_s"] / grid["run_s"]
        print(
            f"{r['way']:40s} run {r['run_s']:.2f} s  compile {r['compile_s'] or 0:.2f} s  "
            f"{r['ms_per_step']:.3f} ms/step  {r['gflops']:.2f} GFLOP/s  "
            f"grid x{r['grid_speedup']:.2f}",
            flush=True,
        )

    loop_ratio = rows[1]["run_s"] / grid["run_s"]
    fastest_torch = min(torch_rows, key=lambda r: r["run_s"], default=None)
    if fastest_torch is None:
        torch_measured, torch_met = "-", "not measured (PyTorch not installed)"
    else:
        torch_ratio = fastest_torch["grid_speedup"]
        torch_measured = f"{torch_ratio:.2f}x ({fastest_torch['way']}, the faster)"
        torch_met = "yes" if torch_ratio >= 2 else "no"
    targets = [
        {
            "target": f"one-program grid >= {0.9 if backend == 'cpu' else 5}x the per-level loop",
            "measured": f"{loop_ratio:.2f}x",
            "met": "yes" if loop_ratio >= (0.9 if backend == "cpu" else 5) else "no",
        },
        {
            "target": "one-program grid >= 2x a PyTorch loop",
            "measured": torch_measured,
            "met": torch_met,
        },
    ]
    data = {
        "machine": info,
        "problem": {
            "d": args.d,
            "n_points": int(points.shape[0]),
            "copies": args.copies,
            "rows": p,
            "width": args.width,
            "levels": args.levels,
            "sigmas": [float(s) for s in np.asarray(sigmas)],
            "steps_per_level": args.steps,
            "flops_per_step": per_step_flops,
            "total_flops": total_flops,
            "quick": quick,
        },
        "matmul": rates["rows"],
        "rows": rows,
        "targets": targets,
        "max_network_difference_grid_vs_loop": diff,
        "public_call_s": public_s,
        "residual_train": residual.tolist(),
        "peak_rss_bytes": peak_rss,
        "device_peak_bytes": device_peak,
    }
    columns = [
        ("way", "way", ""),
        ("run_s", "run s", ".2f"),
        ("compile_s", "compile s", ".2f"),
        ("steps_timed", "steps timed", ""),
        ("ms_per_step", "ms / Adam step", ".3f"),
        ("gflops", "GFLOP/s", ".2f"),
        ("frac_square", "% square matmul", ".1%"),
        ("frac_pair", "% network pair", ".1%"),
        ("grid_speedup", "time / grid's", ".2f"),
    ]
    md = [
        "# Min-norm training: one program for every level against a loop over levels",
        "",
        f"Machine: {describe(info)}.",
        "",
        f"Problem: d = {args.d}, {points.shape[0]} training points (N = {args.n} orthogonal "
        f"and the origin), M = {args.copies} copies (P = {p} rows), K = {args.width}, "
        f"{args.levels} geometric levels from {args.sigma_max:g} to {args.sigma_min:g}, "
        f"the augmented Lagrangian, float64, full batch, exactly {args.steps} Adam steps "
        f"per level (stopping rule off){' (--quick)' if quick else ''}. "
        f"FLOPs: 10 PdK + 4 Pd^2 = {per_step_flops / 1e6:.2f} MFLOP per Adam step (forward and "
        "backward matmuls).",
        "",
        "## Targets",
        "",
        markdown_table(
            targets, [("target", "target", ""), ("measured", "measured", ""), ("met", "met", "")]
        ),
        "",
        "## Training",
        "",
        markdown_table(rows, columns),
        "",
        "`run s`: best of the calls after the first; `compile s`: the first call minus that. "
        "PyTorch: one call, until the first multiplier update past "
        f"{args.torch_budget:g} s (`steps timed`); its time per step is that of its fastest "
        f"outer iteration ({cfg.inner_steps} Adam steps and a multiplier update; on a busy "
        "machine this favours PyTorch, whose short iterations can fall between other jobs), "
        "and its `run s` that time per step times every step of the grid; "
        f"{info['cores']} threads (one per core) and 1 thread, as "
        "its threads wait for each other at every small operation on a busy machine. "
        "`% square matmul` and `% network pair`: achieved FLOP/s over the matmul rates "
        "below. `time / grid's`: the way's time over the one-program grid's. "
        f"Largest difference between the networks of the two JAX ways: {diff:.3g} "
        "(the same keys and steps). The public `train_min_norm` call end to end (with its "
        f"host-side preparation and diagnostics): {public_s:.2f} s. Peak memory of the JAX "
        f"ways (the process's resident set, compilation included): {peak_rss / 2**20:.0f} MiB"
        + ("" if device_peak is None else f"; on the device {device_peak / 2**20:.0f} MiB")
        + ".",
        "",
        "## Matmul rates (float64)",
        "",
        markdown_table(
            rates["rows"],
            [("product", "product", ""), ("best_s", "best s", ".4f"), ("gflops", "GFLOP/s", ".1f")],
        ),
    ]
    kwargs = {} if args.out is None else {"out": pathlib.Path(args.out)}
    write_results("training", data, "\n".join(md), **kwargs)


if __name__ == "__main__":
    main()

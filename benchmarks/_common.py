"""Helpers shared by the benchmark scripts: the machine's description, best-of-k timing,
peak memory, and the JSON and markdown writers."""

import dataclasses
import importlib.metadata
import json
import os
import pathlib
import platform
import resource
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import jax.random as jr
import jaxflow
import numpy as np


# Every benchmark imports this module before its first JAX computation, which is when
# XLA reads its flags.
jaxflow.configure_cpu_workarounds()

# Where every script writes by default; `run_all.py --out DIR` points its benchmarks to DIR.
RESULTS = pathlib.Path(
    os.environ.get("JAXFLOW_BENCHMARK_RESULTS") or pathlib.Path(__file__).parent / "results"
)
# The run of `run_all.py` that started a script, recorded in its JSON, so that a report
# never gathers files of two runs (none when a script runs on its own).
RUN = "JAXFLOW_BENCHMARK_RUN"


def _cpu_model() -> str:
    """The model name, with the family/model numbers and widest SIMD that a virtual
    machine's generic name ("AMD EPYC") leaves out."""
    fields: dict[str, str] = {}
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        return platform.processor() or "unknown"
    flags = fields.get("flags", "").split()
    simd = next((f for f in ("avx512f", "avx2", "avx", "sse4_2") if f in flags), None)
    extra = [f"family {fields['cpu family']} model {fields['model']}"] if "model" in fields else []
    extra += [simd] if simd else []
    name = fields.get("model name", platform.processor() or "unknown")
    return f"{name} ({', '.join(extra)})" if extra else name


def _memory_gib() -> float | None:
    try:
        for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _initial_environment(name: str) -> str | None:
    # The environment the process started with: libraries may change `os.environ` later
    # (`jaxflow.configure_cpu_workarounds` sets XLA and OpenBLAS defaults), after NumPy's
    # BLAS has read it.
    try:
        for item in pathlib.Path("/proc/self/environ").read_bytes().split(b"\0"):
            key, _, value = item.decode(errors="replace").partition("=")
            if key == name:
                return value
        return None
    except OSError:
        return os.environ.get(name)


def machine() -> dict[str, Any]:
    """What the numbers were measured on: platform, CPU, cores, JAX, backend, devices."""
    devices = jax.devices()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cores": cores,
        "memory_gib": _memory_gib(),
        "jax": jax.__version__,
        "jaxlib": importlib.metadata.version("jaxlib"),
        "numpy": np.__version__,
        "backend": jax.default_backend(),
        "devices": [f"{d.platform}:{d.device_kind}" for d in devices],
        "x64": bool(jax.config.jax_enable_x64),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "openblas_num_threads_at_start": _initial_environment("OPENBLAS_NUM_THREADS"),
    }


def describe(info: dict[str, Any]) -> str:
    """One line naming the machine, for the top of a markdown report."""
    kinds = sorted(set(info["devices"]))
    return (
        f"{info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB; {info['platform']}; "
        f"JAX {info['jax']} on {info['backend']} ({', '.join(kinds)} x{len(info['devices'])}); "
        f"NumPy {info['numpy']} (OpenBLAS threads at start: "
        f"{info['openblas_num_threads_at_start'] or 'default'}); "
        f"x64 {'on' if info['x64'] else 'off'}"
        + (f"; XLA_FLAGS={info['xla_flags']}" if info["xla_flags"] else "")
    )


@dataclasses.dataclass(frozen=True)
class Timing:
    """`first_s`: the first call (compilation, if any, plus one run); `best_s`: the best
    of the repeats after it; `compile_s`: their difference, the cost of the first call."""

    first_s: float
    best_s: float
    repeats: int

    @property
    def compile_s(self) -> float:
        return max(self.first_s - self.best_s, 0.0)


def _once(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def timeit_together(
    fns: dict[str, Callable[[], Any]],
    *,
    repeats: int = 3,
    budget_s: float = float("inf"),
    min_repeats: int = 1,
) -> dict[str, Timing]:
    """Time several `fn()`s (each returning JAX or NumPy arrays) as diffrax's benchmarks
    do: a first call of each, then up to `repeats` rounds of one call of each in turn,
    every call ended by `jax.block_until_ready`. Taking turns exposes them all to the
    same machine load, so their ratios stay meaningful on a busy machine.

    After `min_repeats` rounds, rounds stop before one more (as long as the last) would
    take them past `budget_s` seconds per function. With `min_repeats=0` and first calls
    longer than the budget, those calls are the only measurement: pass 0 only when every
    `fn` is already compiled.
    """
    first = {name: _once(fn) for name, fn in fns.items()}
    times: dict[str, list[float]] = {name: [] for name in fns}

    def spent(last: bool) -> float:
        return sum((t[-1] if t else first[n]) if last else sum(t) for n, t in times.items())

    rounds = 0
    while rounds < repeats and (
        rounds < min_repeats or spent(False) + spent(True) <= budget_s * len(fns)
    ):
        for name, fn in fns.items():
            times[name].append(_once(fn))
        rounds += 1
    return {
        name: Timing(
            first_s=first[name], best_s=min(times[name], default=first[name]), repeats=rounds
        )
        for name in fns
    }


def timeit(fn: Callable[[], Any], **kwargs) -> Timing:
    """`timeit_together` for one function."""
    return timeit_together({"fn": fn}, **kwargs)["fn"]


def square_matmul(n: int, dtype, *, repeats: int = 5) -> dict[str, Any]:
    """The machine's matmul rate: one `jit`-compiled (n, n) x (n, n) product of `dtype`,
    2 n^3 FLOPs, best of `repeats` calls after the first."""
    product = jax.jit(jnp.matmul)
    a = jr.normal(jr.key(2), (n, n), dtype)
    b = jr.normal(jr.key(3), (n, n), dtype)
    timing = timeit(lambda: product(a, b), repeats=repeats)
    gflops = 2 * n**3 / timing.best_s / 1e9
    print(f"matmul square {n} {jnp.dtype(dtype).name}: {gflops:.1f} GFLOP/s", flush=True)
    return {"product": f"square {n}", "best_s": timing.best_s, "gflops": gflops}


def rss_bytes() -> int:
    """The process's resident set size now."""
    try:
        pages = int(pathlib.Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return peak_rss_bytes()


def reset_peak_rss() -> bool:
    """Reset the kernel's high-water mark to the current RSS (Linux >= 4.0); False if
    unsupported, in which case `peak_rss_bytes` is the peak since the process started."""
    try:
        pathlib.Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """Peak resident set size: VmHWM where readable, else `getrusage`'s `ru_maxrss`."""
    try:
        for line in pathlib.Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # kB on Linux


def device_peak_bytes() -> int | None:
    """Peak bytes in use on the default device (GPU/TPU); None on CPU."""
    stats = jax.devices()[0].memory_stats()
    return None if not stats else stats.get("peak_bytes_in_use")


def fmt(value: Any, spec: str = ".3g") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return format(value, spec)
    return str(value)


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str, str]]) -> str:
    """A markdown table; `columns` are `(key, header, format spec)`."""
    lines = [
        "| " + " | ".join(header for _, header, _ in columns) + " |",
        "|" + "|".join("---:" for _ in columns) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(fmt(row.get(key), spec) for key, _, spec in columns) + " |")
    return "\n".join(lines)


def write_results(
    name: str, data: dict[str, Any], markdown: str, out: pathlib.Path = RESULTS
) -> None:
    """Write `out/name.json` (with the `run_all.py` run that started it, if any) and
    `out/name.md`."""
    out.mkdir(parents=True, exist_ok=True)
    data = {**data, "run": os.environ.get(RUN)}
    (out / f"{name}.json").write_text(json.dumps(data, indent=2, default=float) + "\n")
    (out / f"{name}.md").write_text(markdown.rstrip() + "\n")
    print(f"wrote {out / name}.json and {out / name}.md")

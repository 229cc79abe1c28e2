"""Work-arounds for bugs in the libraries jaxflow runs on, applied on import.

Each names the bug, the versions it affects and how to tell that it can go.
"""

import os
import re
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version

import jax


def _release(package: str) -> tuple[int, ...]:
    try:
        text = version(package)
    except PackageNotFoundError:
        return ()
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def _add_flag(name: str, value: str) -> None:
    # A user's own setting of the flag wins.
    flags = os.environ.get("XLA_FLAGS", "")
    if f"--{name}" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --{name}={value}".strip()


def apply_xla_workarounds() -> None:
    """Set the XLA:CPU flags that keep jaxlib 0.10.2 and later from hanging.

    XLA reads `XLA_FLAGS` when the CPU backend starts, so this must run before the
    first JAX computation; it only adds a flag the user has not set, and leaves older
    jaxlibs alone. Remove each flag once the minimum jaxlib carries its fix.

    - `--xla_cpu_experimental_ynn_fusion_type=` (empty: off). From jaxlib 0.10.2 (still
      in 0.11.0) XLA:CPU hands dot and reduce fusions to XNNPACK's YNN/slinky kernels,
      which hang or crash on some programs (jax-ml/jax#39257, #40412; fixed in XNNPACK
      53a1797ba, after those releases). Here the vmapped Gaussian distances of the
      linear denoiser (eigh, Cholesky, triangular solves, d = 100) never returned.

    !!! note
        A second hang has no flag: a LAPACK call batched by `vmap` (`eigh`, `svd`,
        `cholesky`, triangular solves) splits its batch over XLA's intra-op thread pool
        and waits for the pieces from inside that pool, so when every worker (two on a
        2-core machine) is such a waiter the program deadlocks. Sweeps over many
        repetitions therefore loop over them with `jax.lax.map`, which keeps each
        LAPACK call unbatched.

    - `OPENBLAS_NUM_THREADS=1` (any jaxlib), unless set by the user. jaxlib's CPU
      LAPACK kernels call scipy's OpenBLAS, which is loaded on the first `eigh`/`svd`
      and reads this variable then. Its own threads spin against XLA's: on a busy
      2-core machine a 100 x 100 `eigh` took 84 ms instead of 0.6 ms, an `svd` 270 ms
      instead of 1.7 ms. XLA already runs independent calls in parallel. NumPy's own
      OpenBLAS reads the variable too when NumPy is first imported after jaxflow.
    """
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if _release("jaxlib") < (0, 10, 2):
        return
    _add_flag("xla_cpu_experimental_ynn_fusion_type", "")


def _on_cpu(xs) -> bool:
    # Concrete arrays know their devices; tracers (inside `jit`) do not, and there the
    # computation runs on the default backend unless the caller placed it elsewhere.
    platforms = set()
    for leaf in jax.tree_util.tree_leaves(xs):
        if isinstance(leaf, jax.Array) and not isinstance(leaf, jax.core.Tracer):
            platforms.update(device.platform for device in leaf.devices())
    if platforms:
        return platforms == {"cpu"}
    return jax.default_backend() == "cpu"


def map_lapack(f: Callable, xs):
    """Apply `f` over the leading axis of `xs` (a pytree), as `jax.vmap(f)(xs)` does.

    On the CPU backend this is `jax.lax.map(f, xs)` instead, which keeps every LAPACK
    call in `f` (`eigh`, `svd`, `cholesky`, triangular solves) unbatched. A LAPACK call
    batched by `vmap` splits its batch over XLA:CPU's intra-op thread pool and waits for
    the pieces from inside that pool; when every worker (two on a 2-core machine) is
    such a waiter, the program deadlocks. This is seen with jaxlib 0.10.2 and has no
    flag; no fixed release is known yet, so the CPU branch stays until one is. On GPU
    and TPU, where batched solvers are fast and safe, this is plain `jax.vmap`.

    The backend is decided when `f` is traced: from the devices of `xs` where they are
    concrete arrays, else (inside `jit`, where they are tracers) from
    `jax.default_backend()`.

    **Arguments:**

    - `f`: a function of one slice of `xs` (leading axis removed), returning a pytree of
        arrays.
    - `xs`: a pytree of arrays sharing a leading axis.

    **Returns:**

    The outputs of `f` stacked along a new leading axis: the same as `jax.vmap(f)(xs)`.
    """
    if _on_cpu(xs):
        return jax.lax.map(f, xs)
    return jax.vmap(f)(xs)

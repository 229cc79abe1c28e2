"""Work-arounds for bugs in the libraries jaxflow runs on.

Nothing here runs on import: [`jaxflow.configure_cpu_workarounds`][] sets the
environment variables, and [`jaxflow._workarounds.map_lapack`][] is used by the code
that batches LAPACK calls. Each names the bug, the versions it affects and how to tell
that it can go.
"""

import dataclasses
import os
import re
import warnings
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version

import jax


def _release(package: str) -> tuple[int, ...]:
    try:
        text = version(package)
    except PackageNotFoundError:
        return ()
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


@dataclasses.dataclass(frozen=True)
class _XlaFlag:
    """An XLA flag that works around a bug of the jaxlib releases in `[first, fixed)`;
    `fixed=None` while no release carries the fix."""

    name: str
    value: str
    first: tuple[int, ...]
    fixed: tuple[int, ...] | None

    def needed(self, jaxlib: tuple[int, ...]) -> bool:
        return bool(jaxlib) and self.first <= jaxlib and (self.fixed is None or jaxlib < self.fixed)


XLA_FLAGS = (
    # From jaxlib 0.10.2 (still in 0.11.0) XLA:CPU hands dot and reduce fusions to
    # XNNPACK's YNN/slinky kernels, which hang or crash on some programs
    # (jax-ml/jax#39257, #40412; fixed in XNNPACK 53a1797ba, after those releases).
    # Here the vmapped Gaussian distances of the linear denoiser (eigh, Cholesky,
    # triangular solves, d = 100) never returned. Set `fixed` to the first jaxlib whose
    # XNNPACK carries the fix, once one is released.
    _XlaFlag("xla_cpu_experimental_ynn_fusion_type", "", first=(0, 10, 2), fixed=None),
)


def backend_started() -> bool | None:
    """Whether JAX has started its backends (so XLA has read `XLA_FLAGS`), found
    without starting them; `None` if this JAX does not say."""
    try:
        from jax._src import xla_bridge
    except ImportError:  # pragma: no cover
        return None
    started = getattr(xla_bridge, "backends_are_initialized", None)
    if callable(started):
        return bool(started())
    backends = getattr(xla_bridge, "_backends", None)  # older JAX: the backends cache
    return None if backends is None else bool(backends)


def configure_cpu_workarounds() -> dict[str, str]:
    """Set the environment variables that keep JAX's CPU backend from hanging or
    crawling on the programs jaxflow runs; call it once, before the first JAX
    computation.

    Importing jaxflow changes nothing: applications (the `jaxflow` command, the tests,
    the benchmarks) call this at their start. Each setting is added only where the user
    has not set it, and only for the jaxlib releases that need it:

    - `XLA_FLAGS += --xla_cpu_experimental_ynn_fusion_type=` (empty: off), for jaxlib
        0.10.2 until a release carries the fix (still needed in 0.11.0). XLA:CPU hands
        dot and reduce fusions to XNNPACK's YNN/slinky kernels, which hang or crash on
        some programs (jax-ml/jax#39257, #40412; fixed in XNNPACK 53a1797ba). Here the
        vmapped Gaussian distances of the linear denoiser (eigh, Cholesky, triangular
        solves, d = 100) never returned.
    - `OPENBLAS_NUM_THREADS=1`, for any jaxlib. jaxlib's CPU LAPACK kernels call
        scipy's OpenBLAS, which reads this variable when it is loaded (on the first
        `eigh`/`svd`). Its threads spin against XLA's: on a busy 2-core machine a
        100 x 100 `eigh` took 84 ms instead of 0.6 ms, an `svd` 270 ms instead of
        1.7 ms. XLA already runs independent calls in parallel. NumPy's own OpenBLAS
        reads it too, when NumPy is first imported.

    XLA reads `XLA_FLAGS` once, when JAX starts its backend (at the first computation or
    device query; importing JAX does not). Called later, the flag is still written but
    does nothing in this process, so this warns.

    !!! note

        A second hang has no flag: a LAPACK call batched by `vmap` can deadlock XLA:CPU's
        thread pool. [`jaxflow._workarounds.map_lapack`][] avoids it.

    **Returns:**

    The environment variables it set, with their new values (empty if none).

    **Warns:**

    `UserWarning` if it changes `XLA_FLAGS` after JAX's backend has started.
    """
    changed = {}
    if "OPENBLAS_NUM_THREADS" not in os.environ:
        os.environ["OPENBLAS_NUM_THREADS"] = changed["OPENBLAS_NUM_THREADS"] = "1"
    jaxlib = _release("jaxlib")
    flags = os.environ.get("XLA_FLAGS", "")
    added = [
        f"--{flag.name}={flag.value}"
        for flag in XLA_FLAGS
        # A user's own setting of the flag wins.
        if flag.needed(jaxlib) and f"--{flag.name}" not in flags
    ]
    if added:
        flags = " ".join([flags, *added]).strip()
        os.environ["XLA_FLAGS"] = changed["XLA_FLAGS"] = flags
        if backend_started():
            warnings.warn(
                "jaxflow.configure_cpu_workarounds() was called after JAX started its "
                f"backend, so {' '.join(added)} has no effect in this process. Call it "
                "before the first JAX computation, or set XLA_FLAGS before starting Python.",
                stacklevel=2,
            )
    return changed


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

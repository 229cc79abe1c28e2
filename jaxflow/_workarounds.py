"""Work-arounds for bugs in the libraries jaxflow runs on, applied on import.

Each names the bug, the versions it affects and how to tell that it can go.
"""

import os
import re
from importlib.metadata import PackageNotFoundError, version


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

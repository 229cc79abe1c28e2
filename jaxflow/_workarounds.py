"""Work-arounds for bugs in the libraries jaxflow runs on, applied on import.

Each names the bug, the versions it affects and how to tell that it can go.
"""

import os
import re
from importlib.metadata import PackageNotFoundError, version


_YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type="


def _release(package: str) -> tuple[int, ...]:
    try:
        text = version(package)
    except PackageNotFoundError:
        return ()
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def disable_ynn_fusion() -> None:
    """Turn off XLA:CPU's YNN fusions on jaxlib 0.10.2 and later.

    From jaxlib 0.10.2 (and still in 0.11.0) XLA:CPU hands dot and reduce fusions to
    XNNPACK's YNN/slinky kernels, which hang the thread pool or crash on some programs
    (jax-ml/jax#39257, #40412; fixed in XNNPACK 53a1797ba, after those releases). In
    jaxflow the vmapped Gaussian distances of the linear denoiser (eigh, Cholesky and
    triangular solves over a batch, d = 100) never returned. An empty fusion type
    disables the YNN path; the flag parses on 0.10.1 and later, so older jaxlibs are
    left alone. XLA reads `XLA_FLAGS` when the CPU backend starts, so this must run
    before the first JAX computation; a user's own setting of the flag wins. Remove it
    once the minimum jaxlib carries the XNNPACK fix.
    """
    if _release("jaxlib") < (0, 10, 2):
        return
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_experimental_ynn_fusion_type" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {_YNN_FLAG}".strip()

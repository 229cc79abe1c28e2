import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PyTree
from tqdm.auto import tqdm

from .._checks import check_optional_int
from .._sharding import device_count, gather, per_device, shard
from ..data import GaussianStarts


def block_size() -> int:
    """The number of rows computed together in one block on the default backend
    (`jax.default_backend()`, whose devices the rows are split across).

    Every row goes through kernels of this one block shape whatever the batch, chunk or
    device count, so rows are bitwise reproducible on a backend (XLA's CPU matmuls round
    differently for, e.g., 7 rows and 1000 rows). Blocks run one after another, so a block
    must fill the machine's parallelism, and its working set should stay in cache (CPU)
    or memory (accelerators).
    """
    # CPU: XLA:CPU leaves a (256, 30) fusion on one core, and 256-row blocks halved the
    # closed-form flow's throughput on 2 cores (benchmarks/flows.py); at 4096 rows every
    # kernel is split across the threads and a block stays in cache.
    if jax.default_backend() == "cpu":
        return 4096
    # GPU and TPU: each kernel of a block is one launch, which must fill every core: the
    # denoiser's (rows, d) x (d, K) product at d = 30, K = 512 has 4096 output tiles of
    # 128 x 128 at 2^17 rows, about 30 per streaming multiprocessor of a 132-SM GPU, and a
    # Heun step's few dozen launches of a few microseconds each are then small beside its
    # ~16 GFLOP. The hidden activations, 2^17 x 512 x 4 bytes = 256 MiB (float32), fit
    # any such device; a smaller batch is padded to one block, a few milliseconds a step.
    return 2**17


def num_starts(y0: Float[Array, "batch d"] | GaussianStarts) -> int:
    return y0.num_starts if isinstance(y0, GaussianStarts) else y0.shape[0]


def _rows(y0, start: int, size: int) -> Float[Array, "size d"]:
    """Rows `start .. start + size - 1`, the last one repeated to fill a short chunk."""
    total = num_starts(y0)
    if isinstance(y0, GaussianStarts) or start + size > total:
        index = np.minimum(np.arange(start, start + size), total - 1)
        return y0.rows(index) if isinstance(y0, GaussianStarts) else jnp.asarray(y0)[index]
    # A whole chunk is a slice: no index array to build and send (and of a NumPy batch,
    # only the chunk is sent to the device).
    return jnp.asarray(y0[start : start + size])


def blockwise(
    fn: Callable[[Float[Array, "block d"]], PyTree], y: Float[Array, "rows d"], block_size: int
) -> PyTree:
    """Inside `jit`: apply the row-wise batched `fn` to `y` one block of `block_size` rows
    at a time, each device taking whole blocks of its share of the rows.

    `y` must have a multiple of `block_size * jax.device_count()` rows, as
    [`jaxflow.flows.map_chunks`][] provides. Outputs keep the leading row axis. Each
    device runs `fn` on its own rows only (no collective), so `fn` must be row-wise.
    """

    def local(rows):
        blocks = rows.reshape(-1, block_size, rows.shape[-1])
        out = jax.lax.map(fn, blocks)
        return jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), out)

    return per_device(local)(y)


def map_chunks(
    fn: Callable[[Float[Array, "chunk d"]], PyTree],
    y0: Float[Array, "batch d"] | GaussianStarts,
    chunk_size: int | None,
    *,
    block_size: int = 1,
    progress: bool = False,
    desc: str = "",
) -> PyTree:
    """Apply a row-wise batched `fn` to `y0` in chunks of at most about `chunk_size` rows.

    Every call sees the same shape: the chunk size is rounded up to a multiple of
    `block_size` times the device count and the last chunk is padded, then trimmed, so
    `fn` compiles once. Each chunk's rows are split across every device of every process
    (`jax.devices()`) and gathered back in every process. Outputs whose leading axis is
    the batch are assembled in order.
    """
    total = num_starts(y0)
    chunk_size = check_optional_int(chunk_size, "chunk_size")
    multiple = block_size * device_count()
    size = total if chunk_size is None else min(int(chunk_size), total)
    size = math.ceil(size / multiple) * multiple
    starts = range(0, total, size)
    out = None
    for start in tqdm(starts, desc=desc, unit="chunk", disable=not progress or len(starts) == 1):
        piece = gather(fn(shard(_rows(y0, start, size))))
        keep = min(size, total - start)
        if keep < size:
            piece = jax.tree.map(lambda x: x[:keep], piece)
        if len(starts) == 1:
            return piece
        if out is None:
            # Filled in place chunk by chunk: concatenating the pieces at the end would
            # hold every output twice, so peak memory would grow with the batch.
            out = jax.tree.map(lambda x: jnp.zeros((total, *x.shape[1:]), x.dtype), piece)
        out = _place(out, piece, start)
    return out


@functools.partial(jax.jit, donate_argnums=0)
def _place(out: PyTree, piece: PyTree, start) -> PyTree:
    """Write the rows of `piece` into `out` from row `start` (`out` is donated: no copy)."""
    return jax.tree.map(
        lambda o, p: jax.lax.dynamic_update_slice_in_dim(o, p, start, 0), out, piece
    )

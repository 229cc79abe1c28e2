import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec
from jaxtyping import Array, Float, PyTree
from tqdm.auto import tqdm

from ..data import GaussianStarts


def num_starts(y0: Float[Array, "batch d"] | GaussianStarts) -> int:
    return y0.num if isinstance(y0, GaussianStarts) else y0.shape[0]


def _rows(y0, start: int, size: int) -> Float[Array, "size d"]:
    """Rows `start .. start + size - 1`, the last one repeated to fill a short chunk."""
    index = np.minimum(np.arange(start, start + size), num_starts(y0) - 1)
    return y0.rows(index) if isinstance(y0, GaussianStarts) else jnp.asarray(y0)[index]


def _shard(batch: Array) -> Array:
    """Split the batch axis across every local device (a no-op on one device)."""
    devices = jax.local_devices()
    if len(devices) == 1:
        return batch
    mesh = jax.sharding.Mesh(np.asarray(devices), ("batch",))
    return jax.device_put(batch, NamedSharding(mesh, PartitionSpec("batch")))


def map_chunks(
    fn: Callable[[Float[Array, "chunk d"]], PyTree],
    y0: Float[Array, "batch d"] | GaussianStarts,
    chunk_size: int | None,
    *,
    progress: bool = False,
    desc: str = "",
) -> PyTree:
    """Apply a row-wise batched `fn` to `y0` in chunks of `chunk_size` rows.

    Every call sees the same shape (the last chunk is padded, then trimmed), so `fn`
    compiles once, and rows do not interact, so the result does not depend on the chunk
    size. Each chunk's batch axis is sharded across the local devices; the padded chunk
    size is rounded up to a multiple of the device count. Outputs whose leading axis is
    the batch are concatenated in order.
    """
    total = num_starts(y0)
    devices = len(jax.local_devices())
    size = total if chunk_size is None else min(int(chunk_size), total)
    if size < 1:
        raise ValueError(f"`chunk_size` must be a positive integer, got {chunk_size}.")
    size = math.ceil(size / devices) * devices
    starts = range(0, total, size)
    pieces = []
    for start in tqdm(starts, desc=desc, unit="chunk", disable=not progress or len(starts) == 1):
        out = fn(_shard(_rows(y0, start, size)))
        keep = min(size, total - start)
        pieces.append(jax.tree.map(lambda x: x[:keep], out))
    if len(pieces) == 1:
        return pieces[0]
    return jax.tree.map(lambda *xs: jnp.concatenate(xs), *pieces)

"""A batch axis split across every device of every process.

One mesh, `("batch",)`, over `jax.devices()`: the local devices of a single process, or,
after `jax.distributed.initialize`, the devices of every process of the run. Every
process holds the same inputs (they come from the same key), makes a global array of
them of which it places only its own devices' rows ([`shard`][]), runs the same compiled
program on its share, and receives every row back ([`gather`][]). Rows never interact,
so no collective runs inside the program; the one exchange is the final all-gather.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxtyping import PyTree


BATCH = PartitionSpec("batch")


def device_count() -> int:
    """The number of devices a batch axis is split across (every process's)."""
    return jax.device_count()


def batch_mesh() -> Mesh:
    return Mesh(np.asarray(jax.devices()), ("batch",))


def padded(count: int) -> int:
    """`count` rounded up to a multiple of [`device_count`][]."""
    return -(-count // device_count()) * device_count()


def pad(tree: PyTree) -> PyTree:
    """`tree` with the leading axis of every array padded to [`padded`][] rows by
    repeating its last row; trim the outputs back after."""
    count = jax.tree.leaves(tree)[0].shape[0]
    size = padded(count)
    if size == count:
        return tree
    index = np.minimum(np.arange(size), count - 1)
    return jax.tree.map(lambda x: x[index], tree)


def local_rows(count: int) -> np.ndarray:
    """The indices along a leading axis of `count` rows that [`shard`][] places on this
    process's devices (every index in a single process)."""
    if jax.process_count() == 1:
        return np.arange(count)
    index = NamedSharding(batch_mesh(), BATCH).addressable_devices_indices_map((count,))
    return np.unique(np.concatenate([np.arange(count)[i] for i in index.values()]))


def shard(tree: PyTree) -> PyTree:
    """Split the leading axis of every array of `tree` across every device.

    The leading axis must be a multiple of [`device_count`][]. Every process must pass
    the same values; each places only its own devices' rows. A no-op on one device.
    """
    if device_count() == 1:
        return tree
    sharding = NamedSharding(batch_mesh(), BATCH)

    def place(x):
        if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            # Keys have no host form: place their data, then wrap it back.
            return jax.random.wrap_key_data(
                place(jax.random.key_data(x)), impl=jax.random.key_impl(x)
            )
        if jax.process_count() == 1 or isinstance(x, jax.core.Tracer):
            # A tracer (the shapes of a program, e.g. under `eval_shape`) has no host
            # value; placing it only annotates the program.
            return jax.device_put(x, sharding)
        host = np.asarray(x)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(place, tree)


def gather(tree: PyTree) -> PyTree:
    """Every row of the sharded arrays of `tree`, in every process (a no-op in one)."""
    if jax.process_count() == 1:
        return tree

    def every_row(x):
        # A traced array already has the global shape; only values are exchanged.
        if isinstance(x, jax.core.Tracer):
            return x
        return jnp.asarray(multihost_utils.process_allgather(x, tiled=True))

    return jax.tree.map(every_row, tree)


def per_device(fn: Callable[[PyTree], PyTree]) -> Callable[[PyTree], PyTree]:
    """Inside `jit`: `fn` applied by each device to its own rows of the leading axis of
    its inputs and outputs (which [`shard`][] split), with no communication."""
    if device_count() == 1:
        return fn
    # Rows are independent, so no collective is needed; diffrax's internal conds mix
    # per-device and replicated values, which the varying-axes check would refuse.
    return jax.shard_map(fn, mesh=batch_mesh(), in_specs=BATCH, out_specs=BATCH, check_vma=False)

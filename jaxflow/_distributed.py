"""One run across several processes and hosts, through JAX's distributed runtime.

[`jaxflow.initialize_distributed`][] starts the runtime the way jaxflow's computations
need it; afterwards `jax.devices()` lists the devices of every process, and
`jaxflow._sharding` splits each batch axis across all of them. Every process runs the
same program (SPMD); what only one process may do (read and write files) is done by
process 0, whose decisions reach the others through [`decided_by_process_0`][].
"""

import json
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

from ._checks import check_int
from ._workarounds import backend_started


def check_coordinator(address: str, name: str = "coordinator_address") -> str:
    """Refuse anything but `HOST:PORT` (an IPv6 host in brackets, `[::1]:1234`) with a
    port in 1..65535."""
    host, sep, port = str(address).rpartition(":")
    if not (sep and host and port.isdigit() and 1 <= int(port) <= 65535):
        raise ValueError(
            f"`{name}` must be HOST:PORT with a port in 1..65535, got {address!r}; "
            "e.g. 10.0.0.1:1234."
        )
    return str(address)


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    local_device_ids: int | Sequence[int] | None = None,
    initialization_timeout: int = 300,
) -> None:
    """Join this process to a run of several processes (on one host or many), so that
    every jaxflow computation splits its batch axis (flows' starts, repetitions, levels,
    stability iterations) over the devices of every process and gathers the result in
    each.

    Call it once, first: before any JAX computation or device query, because JAX fixes
    its devices when its backend starts. It selects the CPU backend's collectives (gloo
    over TCP, unless another implementation is already chosen), which a computation
    spread over several CPU processes needs and which GPU runs do not use, then calls
    `jax.distributed.initialize`. Every process must then run the same program: the same
    computations, in the same order, on the same inputs.

    **Arguments:**

    - `coordinator_address`: `HOST:PORT` of process 0, which every process can reach.
    - `num_processes`: the number of processes of the run.
    - `process_id`: this process's index, in `0, ..., num_processes - 1`.

    Left `None`, these are found by JAX in the environment of a cluster it knows
    (SLURM's `srun`, Open MPI's `mpirun`, ...), or from `JAX_COORDINATOR_ADDRESS`.

    **Other arguments:**

    - `local_device_ids`: the local devices this process uses (default: all, or what the
        cluster assigns).
    - `initialization_timeout`: seconds to wait for every process to join.

    **Raises:**

    - `ValueError`, one line naming the argument, for a malformed address, a count or an
        index out of range, or arguments left `None` that the environment does not give.
    - `RuntimeError` if JAX has already started its backend, or the runtime is already
        initialized.
    """
    if coordinator_address is not None:
        check_coordinator(coordinator_address)
    if num_processes is not None:
        check_int(num_processes, "num_processes", minimum=1)
    if process_id is not None:
        check_int(process_id, "process_id")
        if num_processes is not None and process_id >= num_processes:
            raise ValueError(
                f"`process_id` must be below `num_processes` = {num_processes}, got "
                f"{process_id}; number the processes 0 to {num_processes - 1}."
            )
    if jax.distributed.is_initialized():
        raise RuntimeError(
            "jaxflow.initialize_distributed: the distributed runtime is already initialized; "
            "call it once per process."
        )
    if backend_started():
        raise RuntimeError(
            "jaxflow.initialize_distributed: JAX has already started its backend, so it "
            "cannot join other processes any more; call it first, before any JAX "
            "computation or device query."
        )
    if getattr(jax.config, "jax_cpu_collectives_implementation") is None:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(
            coordinator_address,
            num_processes,
            process_id,
            local_device_ids=local_device_ids,
            initialization_timeout=initialization_timeout,
        )
    except ValueError as e:
        if None not in (coordinator_address, num_processes, process_id):
            raise
        raise ValueError(
            "jaxflow.initialize_distributed: the coordinator address, number of processes "
            f"and process id are not all in the environment ({e}); start under a cluster "
            "JAX detects (e.g. srun on SLURM) or pass coordinator_address, num_processes "
            "and process_id."
        ) from None


def is_process_0() -> bool:
    """Whether this is process 0, the one process of a run that reads and writes files
    (true in a run of one process)."""
    return jax.process_index() == 0


def in_every_process(flag: bool) -> bool:
    """Whether `flag` holds in every process of the run (each passes its own; every
    process must call this at the same point). With one process, `flag`."""
    if jax.process_count() == 1:
        return bool(flag)
    return bool(np.all(multihost_utils.process_allgather(np.asarray(bool(flag)))))


def _broadcast_bytes(payload: bytes) -> bytes:
    # The length first, so that the others know the shape; padded to a power of two so
    # that few shapes compile.
    size = int(multihost_utils.broadcast_one_to_all(np.int32(len(payload))))
    buffer = np.zeros(1 << max(6, (size - 1).bit_length()), np.int32)
    buffer[: len(payload)] = np.frombuffer(payload, np.uint8)
    return bytes(np.asarray(multihost_utils.broadcast_one_to_all(buffer))[:size].astype(np.uint8))


def decided_by_process_0(
    decide: Callable[[], Any], refusals: tuple[type[Exception], ...] = ()
) -> Any:
    """`decide()` run by process 0 alone, its value (JSON) given to every process.

    When `decide` raises one of `refusals`, every process raises it, with the same
    message; any other exception is raised in process 0 and, as a `RuntimeError` naming
    it, in the others, so that no process waits for a value that never comes. Every
    process must call this at the same point of the program. With one process, it is
    `decide()`.
    """
    if jax.process_count() == 1:
        return decide()
    record, failure = None, None
    if is_process_0():
        try:
            record = {"value": decide()}
        except refusals as e:
            kind = next(i for i, cls in enumerate(refusals) if isinstance(e, cls))
            record, failure = {"refusal": kind, "message": str(e)}, e
        except Exception as e:
            record, failure = {"failure": f"{type(e).__name__}: {e}"}, e
    received = json.loads(_broadcast_bytes(json.dumps(record).encode()))
    if failure is not None:
        raise failure
    if "refusal" in received:
        raise refusals[received["refusal"]](received["message"])
    if "failure" in received:
        raise RuntimeError(f"process 0 failed: {received['failure']}")
    return received["value"]

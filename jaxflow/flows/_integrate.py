from collections.abc import Callable

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ..data import GaussianStarts
from ._chunking import BLOCK_SIZE, blockwise, map_chunks
from ._heun import ExplicitHeun
from ._solution import FlowSolution


SOLVERS: dict[str, dfx.AbstractSolver] = {
    "euler": dfx.Euler(),
    "heun": ExplicitHeun(),
    "tsit5": dfx.Tsit5(),
}
# Fixed-grid solvers follow the schedule exactly; the rest adapt their steps.
_FIXED_GRID = (dfx.Euler, dfx.Heun, ExplicitHeun)


def as_solver(solver: str | dfx.AbstractSolver) -> dfx.AbstractSolver:
    if isinstance(solver, dfx.AbstractSolver):
        return solver
    try:
        return SOLVERS[solver]
    except KeyError:
        raise ValueError(
            f"Unknown solver {solver!r}; choose one of {', '.join(SOLVERS)} "
            "or pass a `diffrax.AbstractSolver`."
        ) from None


def uses_grid(solver: dfx.AbstractSolver) -> bool:
    return isinstance(solver, _FIXED_GRID)


def check_batch(y0, name: str = "y0") -> None:
    """Structure checks at trace time: a `(batch, d)` floating array or `GaussianStarts`."""
    if isinstance(y0, GaussianStarts):
        return
    shape = getattr(y0, "shape", None)
    if shape is None or len(shape) != 2:
        raise ValueError(
            f"`{name}` must be a batch of points of shape (batch, d) or a "
            f"`jaxflow.data.GaussianStarts`, got shape {shape}. For one point use y0[None]."
        )
    if not jnp.issubdtype(y0.dtype, jnp.floating):
        raise TypeError(f"`{name}` must be floating point, got dtype {y0.dtype}.")


@eqx.filter_jit
def _solve_chunk(
    vector_field: Callable,
    args,
    y0: Float[Array, "chunk d"],
    t0: Float[Array, ""],
    t1: Float[Array, ""],
    grid: Float[Array, " grid"] | None,
    solver: dfx.AbstractSolver,
    controller: dfx.AbstractStepSizeController | None,
    save_ts: Float[Array, " save"] | None,
    max_steps: int,
):
    term = dfx.ODETerm(vector_field)
    if grid is not None:
        controller, dt0 = dfx.StepTo(ts=grid), None
    else:
        dt0 = None  # the PID controller picks the first step
    saveat = dfx.SaveAt(t1=True) if save_ts is None else dfx.SaveAt(ts=save_ts, t1=True)

    def one(y):
        sol = dfx.diffeqsolve(
            term,
            solver,
            t0,
            t1,
            dt0,
            y,
            args=args,
            stepsize_controller=controller,
            saveat=saveat,
            max_steps=max_steps,
            throw=False,
        )
        trajectory = None if save_ts is None else sol.ys[:-1]
        return sol.ys[-1], trajectory, sol.result, sol.stats["num_accepted_steps"]

    # Rows never interact, and each goes through kernels of one block shape, so any
    # chunking or device count gives bitwise the same rows.
    return blockwise(jax.vmap(one), y0, BLOCK_SIZE)


def integrate(
    vector_field: Callable,
    args,
    y0,
    *,
    t0,
    t1,
    grid: Float[Array, " grid"] | None,
    solver: dfx.AbstractSolver,
    rtol: float,
    atol: float,
    save_ts,
    max_steps: int,
    chunk_size: int | None,
    progress: bool,
    throw: bool,
    desc: str,
) -> FlowSolution:
    """Solve `dy/dt = vector_field(t, y, args)` from every row of `y0`, chunk by chunk.

    With a `grid` the solver steps exactly on it; without one a PID controller adapts the
    steps to `rtol`/`atol` within `max_steps`.
    """
    if grid is not None:
        controller, max_steps = None, len(grid) - 1
    else:
        controller = dfx.PIDController(rtol=rtol, atol=atol, pcoeff=0.3, icoeff=0.4)
    dtype = y0.dtype
    cast = lambda x: None if x is None else jnp.asarray(x, dtype)
    t0, t1, grid, save_ts = map(cast, (t0, t1, grid, save_ts))

    def solve(chunk):
        return _solve_chunk(
            vector_field, args, chunk, t0, t1, grid, solver, controller, save_ts, max_steps
        )

    ys, trajectory, result, num_steps = map_chunks(
        solve, y0, chunk_size, block_size=BLOCK_SIZE, progress=progress, desc=desc
    )
    solution = FlowSolution(
        ys=ys, ts=save_ts, trajectory=trajectory, result=result, num_steps=num_steps
    )
    return solution.raise_on_failure() if throw else solution

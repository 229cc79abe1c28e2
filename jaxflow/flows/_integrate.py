from collections.abc import Callable

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._checks import check_finite
from ..data import GaussianStarts
from ._chunking import block_size, blockwise, map_chunks
from ._heun import ExplicitHeun
from ._solution import FlowSolution, raise_on_failure_in_place, RESULTS


SOLVERS: dict[str, dfx.AbstractSolver] = {
    "euler": dfx.Euler(),
    "heun": ExplicitHeun(),
    "tsit5": dfx.Tsit5(),
}
# The string aliases of adaptive methods bring their step-size controller along (unless
# one is passed): "tsit5" always meant Tsit5 with this PID controller.
ADAPTIVE_ALIASES: dict[str, dfx.AbstractStepSizeController] = {
    "tsit5": dfx.PIDController(rtol=1e-6, atol=1e-6, pcoeff=0.3, icoeff=0.4),
}


def as_solver(solver: str | dfx.AbstractSolver) -> dfx.AbstractSolver:
    if isinstance(solver, dfx.AbstractSolver):
        return solver
    try:
        return SOLVERS[solver]
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown `solver` {solver!r}; choose one of {', '.join(SOLVERS)} "
            "or pass a `diffrax.AbstractSolver`."
        ) from None


def as_controller(
    stepsize_controller: dfx.AbstractStepSizeController, solver: str | dfx.AbstractSolver
) -> dfx.AbstractStepSizeController:
    """The controller to use: `ConstantStepSize` (fixed steps on a grid), `StepTo` or
    an adaptive one; a string alias of an adaptive solver brings its own."""
    if not isinstance(stepsize_controller, dfx.AbstractStepSizeController):
        raise TypeError(
            "`stepsize_controller` must be a `diffrax.AbstractStepSizeController` such as "
            f"`diffrax.ConstantStepSize()` or `diffrax.PIDController(...)`, got "
            f"{type(stepsize_controller).__name__}."
        )
    if type(stepsize_controller) is dfx.ConstantStepSize and isinstance(solver, str):
        return ADAPTIVE_ALIASES.get(solver, stepsize_controller)
    return stepsize_controller


def uses_grid(stepsize_controller: dfx.AbstractStepSizeController) -> bool:
    """Whether the solver steps on a grid of `steps` fixed steps (built by the caller)."""
    return isinstance(stepsize_controller, dfx.ConstantStepSize)


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
    if 0 in shape:
        raise ValueError(f"`{name}` is empty (shape {tuple(shape)}); pass at least one start.")
    check_finite(y0, name)


def batch_dim(y0) -> int:
    """The dimension d of a batch of starts or a `GaussianStarts`."""
    return y0.d if isinstance(y0, GaussianStarts) else y0.shape[-1]


@eqx.filter_jit
def _solve_chunk(
    vector_field: Callable,
    args,
    y0: Float[Array, "chunk d"],
    t0: Float[Array, ""],
    t1: Float[Array, ""],
    solver: dfx.AbstractSolver,
    controller: dfx.AbstractStepSizeController,
    save_ts: Float[Array, " save"] | None,
    max_steps: int,
):
    term = dfx.ODETerm(vector_field)
    saveat = dfx.SaveAt(t1=True) if save_ts is None else dfx.SaveAt(ts=save_ts, t1=True)

    def one(y):
        sol = dfx.diffeqsolve(
            term,
            solver,
            t0,
            t1,
            None,  # `StepTo` takes its steps from its grid, an adaptive controller picks
            y,
            args=args,
            stepsize_controller=controller,
            saveat=saveat,
            max_steps=max_steps,
            throw=False,
        )
        # On a fixed grid diffrax steps on through an overflow and reports success; a
        # non-finite saved state marks the failure (diffrax's own code comes first: it
        # fills the states it did not reach with inf).
        result = RESULTS.promote(sol.result)
        blew_up = (result == RESULTS.successful) & ~jnp.all(jnp.isfinite(sol.ys))
        result = RESULTS.where(blew_up, RESULTS.nonfinite_state, result)
        trajectory = None if save_ts is None else sol.ys[:-1]
        return sol.ys[-1], trajectory, result, sol.stats["num_accepted_steps"]

    # Rows never interact, and each goes through kernels of one block shape, so any
    # chunking or device count gives bitwise the same rows.
    return blockwise(jax.vmap(one), y0, block_size())


def integrate(
    vector_field: Callable,
    args,
    y0,
    *,
    t0,
    t1,
    solver: dfx.AbstractSolver,
    stepsize_controller: dfx.AbstractStepSizeController,
    save_ts,
    max_steps: int,
    chunk_size: int | None,
    progress: bool,
    throw: bool,
    desc: str,
) -> FlowSolution:
    """Solve `dy/dt = vector_field(t, y, args)` from every row of `y0`, chunk by chunk.

    With `diffrax.StepTo` the solver steps exactly on its grid; with an adaptive
    controller it adapts the steps within `max_steps`. Each row's status is in the
    solution's `result`; with `throw` the solution carries an `eqx.error_if` check that
    raises if any row failed (one check after all chunks, inside the traced program).
    """
    if isinstance(stepsize_controller, dfx.StepTo):
        max_steps = len(stepsize_controller.ts) - 1
    dtype = y0.dtype
    cast = lambda x: None if x is None else jnp.asarray(x, dtype)
    t0, t1, save_ts = map(cast, (t0, t1, save_ts))

    def solve(chunk):
        return _solve_chunk(
            vector_field, args, chunk, t0, t1, solver, stepsize_controller, save_ts, max_steps
        )

    ys, trajectory, result, num_steps = map_chunks(
        solve, y0, chunk_size, block_size=block_size(), progress=progress, desc=desc
    )
    solution = FlowSolution(
        ys=ys, ts=save_ts, trajectory=trajectory, result=result, num_steps=num_steps
    )
    return raise_on_failure_in_place(solution) if throw else solution

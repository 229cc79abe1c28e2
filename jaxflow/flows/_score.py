from collections.abc import Callable

import diffrax as dfx
import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .._custom_types import Point, Sigma
from ..data import GaussianStarts
from ._integrate import as_solver, check_batch, integrate, uses_grid
from ._solution import FlowSolution


def score_vector_field(t, y: Point, args) -> Point:
    r"""The score flow at a fixed noise level, $dy/dt = D(y; \sigma) - y = \sigma^2 s(y)$."""
    del t
    denoiser, sigma = args
    return denoiser(y, sigma) - y


def score_flow(
    denoiser: Callable[[Point, Sigma], Point],
    y0: Float[Array, "batch d"] | GaussianStarts,
    *,
    sigma: Float[ArrayLike, ""],
    t1: Float[ArrayLike, ""],
    steps: int = 256,
    solver: str | dfx.AbstractSolver = "heun",
    save_ts: Float[ArrayLike, " save"] | None = None,
    chunk_size: int | None = None,
    rtol: float = 1e-6,
    atol: float = 1e-6,
    max_steps: int = 4096,
    throw: bool = True,
    progress: bool = False,
) -> FlowSolution:
    r"""Integrate the score flow at a fixed noise level $\sigma$ from time 0 to $t_1$
    (SCIENCE.md Z3; [Z], Section 4):

    $$\frac{dy}{dt} = D(y; \sigma) - y.$$

    For the closed-form denoiser on orthogonal data each hyperbox vertex is a stable
    point and the flow ends at the nearest one (round $u_n \cdot y / L_n$ at 1/2).

    **Main arguments:**

    - `denoiser`: any callable `(y, sigma) -> x_hat` on one point of shape `(d,)`.
    - `y0`: the starts, shape `(batch, d)`, or a [`jaxflow.data.GaussianStarts`][].
    - `sigma`: the fixed noise level, a JAX scalar.
    - `t1`: the flow time; the approach to a vertex slows near the hyperbox's
      boundary, so take it long (tens of units).

    **Other arguments:** `steps` (uniform steps for `"euler"`/`"heun"`, default 256; the
    first-step hint for adaptive solvers), `solver`, `save_ts` (times at which to save
    the trajectory), `chunk_size`, `rtol`, `atol`, `max_steps`, `throw`, `progress`: as in
    [`jaxflow.flows.probability_flow`][].

    **Returns:** a [`jaxflow.flows.FlowSolution`][]; `ys` are the endpoints $y(t_1)$.
    """
    check_batch(y0)
    solver = as_solver(solver)
    dtype = y0.dtype
    t1 = jnp.asarray(t1, dtype)
    if t1.ndim:
        raise ValueError("`t1` must be a scalar.")
    t1 = eqx.error_if(t1, t1 <= 0, "score_flow needs t1 > 0.")
    grid = jnp.linspace(0.0, 1.0, steps + 1, dtype=dtype) * t1 if uses_grid(solver) else None
    return integrate(
        score_vector_field,
        (denoiser, jnp.asarray(sigma, dtype)),
        y0,
        t0=0.0,
        t1=t1,
        grid=grid,
        solver=solver,
        rtol=rtol,
        atol=atol,
        save_ts=save_ts,
        max_steps=max_steps,
        chunk_size=chunk_size,
        progress=progress,
        throw=throw,
        desc="score flow",
    )

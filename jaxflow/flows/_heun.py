from typing import ClassVar

import diffrax as dfx
import jax
import jax.numpy as jnp
from jaxtyping import PyTree


class ExplicitHeun(dfx.AbstractAdaptiveSolver):
    r"""Heun's method (the explicit trapezoidal rule, EDM's second-order sampler) with its
    two stages written out:

    $$k_1 = h f(t_0, y_0), \quad k_2 = h f(t_1, y_0 + k_1), \quad
    y_1 = y_0 + \tfrac12 (k_1 + k_2),$$

    with the embedded Euler error estimate $\tfrac12 (k_1 - k_2)$ and the same Hermite
    interpolation for saved times as `diffrax.Heun`. It is `diffrax.Heun`'s method; the
    flows use it in its place because `diffrax.Heun` goes through the generic Runge-Kutta
    machinery (a loop over stages writing into a `(stages, d)` buffer, combined by
    tableau dot products), which under `vmap` costs several extra passes over the batch
    per step: as much as the closed-form denoiser itself (`benchmarks/flows.py`). The
    results agree with `diffrax.Heun` to round-off.
    """

    term_structure: ClassVar = dfx.AbstractTerm
    interpolation_cls: ClassVar = dfx.ThirdOrderHermitePolynomialInterpolation.from_k

    def order(self, terms):
        return 2

    def init(self, terms, t0, t1, y0, args) -> None:
        return None

    def step(self, terms, t0, t1, y0: PyTree, args, solver_state, made_jump):
        del solver_state, made_jump
        control = terms.contr(t0, t1)
        k1 = terms.vf_prod(t0, y0, args, control)
        k2 = terms.vf_prod(t1, jax.tree.map(lambda y, k: y + k, y0, k1), args, control)
        # Same association as diffrax's tableau: y0 + (b1 k1 + b2 k2).
        y1 = jax.tree.map(lambda y, a, b: y + (0.5 * a + 0.5 * b), y0, k1, k2)
        y_error = jax.tree.map(lambda a, b: 0.5 * a - 0.5 * b, k1, k2)
        k = jax.tree.map(lambda a, b: jnp.stack([a, b]), k1, k2)
        return y1, y_error, dict(y0=y0, y1=y1, k=k), None, dfx.RESULTS.successful

    def func(self, terms, t0, y0, args):
        return terms.vf(t0, y0, args)

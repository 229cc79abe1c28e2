"""NaN-safe numerical helpers shared by all stages.

Each helper names the trap it avoids, in the manner of `optax`'s numerics module.
"""

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float


def gaussian_log_weights(
    y: Float[Array, " d"], points: Float[Array, "n d"], sigma: Float[Array, ""]
) -> Float[Array, " n"]:
    r"""The logits $-(|y - x_n|^2 - \min_m |y - x_m|^2) / (2\sigma^2)$ of the posterior
    weights of $x_n$ under $\frac1N \sum_n \mathcal{N}(x_n, \sigma^2 I)$.

    Three traps are avoided. The squared distances are summed from the differences
    divided by their largest component $M = \max_{n,i} |y_i - x_{n,i}|$, never expanded
    as $|y|^2 - 2 y \cdot x + |x|^2$ (which loses every digit near a data point).
    $\sigma$ enters only through $\rho = M / \sigma$, applied once to each factor of
    $\rho^2$: neither $\sigma^2$ (in float32 it underflows near $10^{-23}$) nor
    $(y - x_n)/\sigma$ (which can overflow, and $\infty/\infty$ is NaN) is ever formed.
    Giving the nearest point the logit 0 exactly keeps the maximum finite even when
    $|y - x_n|^2 / \sigma^2$ overflows: the other logits then become $-\infty$, never NaN.
    """
    diff = y - points
    scale = jnp.max(jnp.abs(diff))
    scale = jnp.where(scale > 0, scale, 1.0)
    unit = jnp.sum((diff / scale) ** 2, axis=-1)
    excess = unit - jnp.min(unit)
    ratio = scale / sigma
    return jnp.where(excess == 0, 0.0, -0.5 * ratio * (ratio * excess))


def divide_by_scalar(x: Float[Array, "..."], c: Float[Array, ""]) -> Float[Array, "..."]:
    r"""$x / c$ for a traced scalar $c$, as $x \cdot (1 / c)$ in every program.

    The trap is XLA:CPU's: its algebraic simplifier rewrites `x / broadcast(c)` as
    `x * broadcast(1 / c)` only where `c` has no other use, which depends on the rest of
    the program. The single-device program and the one partitioned across devices
    differed, so a training set's mean moved by an ulp with the device count, and a
    near-singular least-squares fit of the centred points amplified that to $10^{-9}$.
    Written as the product, nothing is left to rewrite.
    """
    return x * (1 / c)


def weighted_mean(w: Float[Array, " n"], x: Float[Array, "n d"]) -> Float[Array, " d"]:
    r"""$\sum_i w_i x_i / \sum_i w_i$ (by [`divide_by_scalar`][])."""
    return divide_by_scalar(w @ x, jnp.sum(w))


def inf_norm(x: Float[Array, "... d"]) -> Float[Array, "..."]:
    """$L^\\infty$ norm over the last axis."""
    return jnp.max(jnp.abs(x), axis=-1)


def clip01(x: Array) -> Array:
    """Clip to the unit interval; the hyperbox coordinates' natural range."""
    return jnp.clip(x, 0.0, 1.0)


@jax.custom_jvp
def eigvalsh(a: Float[Array, "d d"]) -> Float[Array, " d"]:
    r"""The eigenvalues of a symmetric matrix, ascending, with a gradient that stays finite
    at repeated eigenvalues.

    `jnp.linalg.eigvalsh` differentiates through the eigenvectors, whose tangents divide by
    $\lambda_i - \lambda_j$: at a repeated eigenvalue (an isotropic covariance, or the zero
    eigenvalues of a rank-deficient one) the gradient becomes NaN even though any symmetric
    function of the eigenvalues (a trace, a log-determinant) is smooth there. The JVP here
    is $\dot\lambda_i = u_i^\top \dot A\, u_i$, exact for every symmetric function of the
    spectrum whatever basis the solver picks inside a repeated eigenspace.
    """
    return jnp.linalg.eigh(a)[0]


@eigvalsh.defjvp
def _eigvalsh_jvp(primals, tangents):
    (a,), (da,) = primals, tangents
    evals, evecs = jnp.linalg.eigh(a)
    return evals, jnp.einsum("...ji,...jk,...ki->...i", evecs, da, evecs)


def log_diff_exp(
    a: Float[Array, "*shape"], b: Float[Array, "*shape"]
) -> tuple[Float[Array, "*shape"], Float[Array, "*shape"]]:
    r"""$\ln\lvert e^a - e^b \rvert$ and the sign of $e^a - e^b$, without leaving log space.

    Computed as $\max(a, b) + \ln(-\operatorname{expm1}(-\lvert a - b \rvert))$: accurate
    when $a \approx b$, where $e^a - e^b$ would lose every digit. When $a$ and $b$ are
    bitwise equal the difference is exactly zero (log $-\infty$, sign 0), which is what
    lets two analytically equal terms cancel exactly instead of leaving a rounding error.
    Both $-\infty$ gives $-\infty$ and sign 0, never NaN. At an exact cancellation the
    gradient is 0, not NaN: $-\infty$ is constant there.
    """
    hi = jnp.maximum(a, b)
    gap = jnp.where(jnp.isneginf(hi), 0.0, jnp.abs(a - b))
    # The double `where`: the branch not taken must not see gap = 0 either, or its
    # gradient (1 / expm1(0)) turns the zero cotangent into NaN.
    safe_gap = jnp.where(gap == 0, 1.0, gap)
    log_abs = jnp.where(gap == 0, -jnp.inf, hi + jnp.log(-jnp.expm1(-safe_gap)))
    return log_abs, jnp.where(gap == 0, 0.0, jnp.sign(a - b)).astype(log_abs.dtype)


def signed_logsumexp(
    log_abs: Float[Array, "*shape k"], signs: Float[Array, "*shape k"]
) -> tuple[Float[Array, "*shape"], Float[Array, "*shape"]]:
    r"""$\ln\lvert \sum_k s_k e^{a_k} \rvert$ and the sign of the sum, for signs
    $s_k \in \{-1, 0, 1\}$ and log-magnitudes $a_k$ over the last axis.

    Every term is scaled by the largest magnitude $M$ before exponentiating, so no term
    underflows however small the magnitudes are (the overlaps of [H] sit near $e^{-130}$
    at $d = 100$, below the float32 range) and the sum is formed with relative error a few
    $\varepsilon$ of $\sum_k e^{a_k - M}$. Terms with sign 0 or $a_k = -\infty$ are
    ignored; an empty or exactly cancelling sum gives $(-\infty, 0)$ and a zero gradient,
    never NaN. Combine analytically equal pairs with
    [`jaxflow._numerics.log_diff_exp`][] first: cancelling them here would leave their
    rounding error in the sum.
    """
    live = (signs != 0) & ~jnp.isneginf(log_abs)
    # `initial`: an empty sum (k = 0) has no largest term.
    top = jnp.max(jnp.where(live, log_abs, -jnp.inf), axis=-1, keepdims=True, initial=-jnp.inf)
    top = jnp.where(jnp.isfinite(top), top, 0.0)
    terms = signs * jnp.exp(jnp.where(live, log_abs - top, 0.0))
    total = jnp.sum(jnp.where(live, terms, 0.0), axis=-1)
    # The double `where` keeps log(0)'s infinite slope out of the gradient at a zero sum.
    safe_total = jnp.where(total == 0, 1.0, total)
    log_total = jnp.where(total == 0, -jnp.inf, top[..., 0] + jnp.log(jnp.abs(safe_total)))
    return log_total, jnp.sign(total).astype(log_total.dtype)

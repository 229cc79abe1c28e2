"""The reference implementation's arithmetic for [H]'s relative distance
(docs/conventions.md#reference-arithmetic), reproduced on purpose, rounding included, so that
its results can be told apart from the exact ones. Nothing here is meant to be accurate."""

import math

import equinox as eqx
import jax.lax as lax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..data import Gaussian
from ._kernel import _unit, KernelMixture, mixture_pair_sums


# The reference counted a Hellinger determinant below this as zero.
REFERENCE_DET_FLOOR = math.exp(-25.0)
_F32 = jnp.float32
# The reference's normalisation: (2 pi)^(1/2) where (2 pi)^(d/2) belongs.
_TWO_PI = np.float32(2 * math.pi)


def _normalisation(cov: Float[Array, "d d"]) -> Float[Array, ""]:
    return 1.0 / jnp.sqrt(_TWO_PI * jnp.linalg.det(cov))


def _count_eps(mix: KernelMixture) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """The mixture's size $N$ and $\varepsilon = c s N^{-1/d}$, in float32."""
    size = _F32(mix.size) if mix.mask is None else jnp.sum(mix.mask, dtype=_F32)
    return size, (mix.bandwidth * mix.s).astype(_F32) * size ** _F32(-1.0 / mix.d)


def reference_squares(mix: KernelMixture, *, block_size: int = 1024) -> Float[Array, "B B"]:
    """The float32 sums of the mixture's kernel over every square of 25 x 25 points,
    diagonal included, from a float32 Gram matrix: what the reference added up."""
    return mixture_pair_sums(
        mix, gram_dtype=_F32, block_size=block_size, reference_blocks=True
    ).squares


def reference_self_term(
    mix: KernelMixture, squares: Float[Array, "B B"] | None = None
) -> Float[Array, ""]:
    r"""$\frac{1}{N^2} \frac{1}{\sqrt{2\pi \det(2\varepsilon^2 I)}} \sum_{i,j}
    e^{-|x_i - x_j|^2 / 4\varepsilon^2}$ in float32, diagonal included, the 25 x 25 square
    sums (`squares`, default `reference_squares(mix)`) added one after another in
    row-major order as a loop over squares would."""
    d = mix.d
    size, eps = _count_eps(mix)
    if squares is None:
        squares = reference_squares(mix)

    def add(total, square_sum):
        return total + square_sum, None

    total, _ = lax.scan(add, jnp.zeros((), _F32), squares.reshape(-1), unroll=25)
    return total / (size * size) * _normalisation(2 * eps * eps * jnp.eye(d, dtype=_F32))


def reference_cross_term(q: Gaussian, mix: KernelMixture) -> Float[Array, ""]:
    r"""$\frac1N \sum_i e^{-\frac12 (x_i - \mu)^\top C^{-1} (x_i - \mu)} / \sqrt{2\pi \det C}$,
    $C = \Sigma + \varepsilon^2 I$, in float32 with an explicit inverse. The reference
    inverted $C$ once per point; it is the same matrix every time, so one inverse gives
    the same numbers."""
    x = mix.points.astype(_F32)
    d = mix.d
    size, eps = _count_eps(mix)
    cov = q.cov.astype(_F32) + eps * eps * jnp.eye(d, dtype=_F32)
    inverse = jnp.linalg.inv(cov)
    y = x - q.mean.astype(_F32)
    quad = jnp.sum(jnp.matmul(y, inverse, precision=lax.Precision.HIGHEST) * y, axis=-1)
    kernels = jnp.exp(-0.5 * quad) * _normalisation(cov)
    if mix.mask is not None:
        kernels = jnp.where(mix.mask, kernels, 0.0)
    return jnp.sum(kernels) / size


def reference_gaussian_terms(q: Gaussian, p: Gaussian) -> tuple[Float[Array, ""], Float[Array, ""]]:
    d = p.mean.shape[-1]
    cov_p = p.cov.astype(_F32)
    cov = q.cov.astype(_F32) + cov_p
    delta = q.mean.astype(_F32) - p.mean.astype(_F32)
    cross = jnp.exp(-0.5 * delta @ jnp.linalg.inv(cov) @ delta) * _normalisation(cov)
    del d
    return _normalisation(2 * cov_p), cross


def reference_delta(q: Gaussian, train: KernelMixture, reference: KernelMixture | Gaussian):
    """`reference_from_terms` for one q, from its training and reference terms."""
    self_train = reference_self_term(train)
    cross_train = reference_cross_term(q, train)
    if isinstance(reference, KernelMixture):
        self_ref = reference_self_term(reference)
        cross_ref = reference_cross_term(q, reference)
    else:
        self_ref, cross_ref = reference_gaussian_terms(q, reference)
    return reference_from_terms(self_train, cross_train, self_ref, cross_ref, q.mean.shape[-1])


def reference_from_terms(self_train, cross_train, self_ref, cross_ref, dim: int):
    """Delta as the reference formed it, D_S - D_O with D = self - 2 cross, in float32:
    `(sign, log_abs, log_terms, log_error)` for `RelativeDistance.bounded`."""
    delta = (self_train - 2 * cross_train) - (self_ref - 2 * cross_ref)
    magnitudes = jnp.stack(
        [
            self_train,
            self_ref,
            jnp.zeros((), _F32),
            jnp.zeros((), _F32),
            2 * cross_train,
            2 * cross_ref,
        ]
    )
    log_terms = jnp.log(magnitudes)
    # Each normalisation raises a rounded eps^2 or eigenvalue to the power d (inside a
    # determinant), so each float32 term carries some 2d ulps; so does Delta.
    log_error = jnp.log((2 * dim + 8) * _unit(_F32) * jnp.sum(magnitudes))
    return jnp.sign(delta), jnp.log(jnp.abs(delta)), log_terms, log_error


@eqx.filter_jit
def reference_hellinger_squared(q: Gaussian, p: Gaussian) -> Float[Array, ""]:
    r"""The squared Hellinger distance as the reference implementation computed it
    (docs/conventions.md#reference-arithmetic): float32, explicit determinants and inverse,

    $$H^2 = 1 - \frac{(\det\Sigma_q)^{1/4} (\det\Sigma_p)^{1/4}}{(\det\bar\Sigma)^{1/2}}
    e^{-\frac18 \delta^\top \bar\Sigma^{-1} \delta},$$

    with a determinant of $\Sigma_q$ or $\Sigma_p$ below $e^{-25}$ counted as 0, so that
    $H^2 = 1$. At $d = 100$ that holds while $q$ is degenerate ($n \le d$) and again
    at large $n$, where the generated covariance's eigenvalues approach
    $\rho \approx 0.5$ and $0.5^{100} \approx 10^{-30}$: much of the reference's
    Hellinger curve is this floor, unlike that of the exact
    [`jaxflow.estimators.hellinger_squared`][].
    """
    cov_q, cov_p = q.cov.astype(_F32), p.cov.astype(_F32)
    det_q, det_p = jnp.linalg.det(cov_q), jnp.linalg.det(cov_p)
    bar = 0.5 * (cov_q + cov_p)
    delta = q.mean.astype(_F32) - p.mean.astype(_F32)
    bc = (det_q**0.25 * det_p**0.25 / jnp.sqrt(jnp.linalg.det(bar))) * jnp.exp(
        -0.125 * delta @ jnp.linalg.inv(bar) @ delta
    )
    floor = jnp.minimum(det_q, det_p) < _F32(REFERENCE_DET_FLOOR)
    return jnp.where(floor, _F32(1.0), 1.0 - bc)

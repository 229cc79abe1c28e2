import math

import equinox as eqx
import jax.lax as lax
import jax.numpy as jnp
import jax.scipy.special as jsp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float

from .._checks import (
    check_all_positive,
    check_gaussian,
    check_gram_dtype,
    check_int,
    check_points,
    check_scalar,
    check_tolerance,
    mask_weights,
)
from .._numerics import signed_logsumexp
from ..data import Gaussian, masked_moments
from ._gaussian import Spectrum, spectrum


_LOG_2PI = math.log(2 * math.pi)


class KernelMixture(eqx.Module):
    r"""The Gaussian kernel approximation of a sample $S = \{x_1, \dots, x_N\}$
    ([H], Section 4; docs/models.md#relative-distance),

    $$p_S^\varepsilon = \frac1N \sum_{i=1}^N \mathcal N(x_i, \varepsilon^2 I_d), \qquad
    \varepsilon = c\, s\, N^{-1/d},$$

    with $s$ the standard deviation of the sampling distribution and $c$ a bandwidth
    factor ($c = 1$ in [H]). Under this rule the kernel's self-overlap
    $\frac1N \mathcal N(0; 0, 2\varepsilon^2 I) = (4\pi c^2 s^2)^{-d/2}$ does not depend
    on $N$: two mixtures with the same $c\,s$ share it exactly, whatever their sizes,
    which is what lets [`jaxflow.estimators.relative_distance`][] cancel it exactly.

    **Arguments:**

    - `points`: the sample $x_i$, shape `(N, d)`.
    - `s`: $s > 0$, the sampling distribution's standard deviation. Default 1.
    - `bandwidth`: $c > 0$. Default 1.
    - `mask`: optional booleans of shape `(N,)`: rows where it is `False` are padding and
      not kernels of the mixture, whose size $N$ is then the number of `True` rows (a
      traced count is fine). Samples of different sizes padded to one shape then share
      one compilation.

    **Raises:** `ValueError`/`TypeError` for points that are not a floating `(N, d)`
    array, a non-scalar `s` or `bandwidth`, or a malformed `mask`.
    """

    points: Float[Array, "N d"]
    s: Float[Array, ""]
    bandwidth: Float[Array, ""]
    mask: Bool[Array, " N"] | None

    def __init__(
        self,
        points: ArrayLike,
        s: ArrayLike = 1.0,
        bandwidth: ArrayLike = 1.0,
        *,
        mask: Bool[ArrayLike, " N"] | None = None,
    ):
        points = check_points(jnp.asarray(points), "points")
        self.points = points
        self.s = check_scalar(s, "s", points.dtype)
        self.bandwidth = check_scalar(bandwidth, "bandwidth", points.dtype)
        check_all_positive(self.s, "s")
        check_all_positive(self.bandwidth, "bandwidth")
        mask_weights(mask, points.shape[0], points.dtype, rows_of="points")
        self.mask = None if mask is None else jnp.asarray(mask)

    @property
    def size(self) -> int:
        """The number of rows of `points` (kernels and padding)."""
        return self.points.shape[-2]

    @property
    def log_count(self) -> Float[Array, ""] | float:
        r"""$\ln N$, $N$ the number of kernels (the rows `mask` keeps)."""
        if self.mask is None:
            return math.log(self.size)
        return jnp.log(jnp.sum(self.mask, dtype=self.points.dtype))

    @property
    def d(self) -> int:
        return self.points.shape[-1]

    @property
    def scale2(self) -> Float[Array, ""]:
        r"""$c^2 s^2$, the kernel variance before the factor $N^{-2/d}$."""
        return (self.bandwidth * self.s) ** 2

    @property
    def eps2(self) -> Float[Array, ""]:
        r"""$\varepsilon^2 = c^2 s^2 N^{-2/d}$."""
        return self.scale2 * jnp.exp(-2.0 * self.log_count / self.d)


def check_mixture(mix: KernelMixture, name: str) -> KernelMixture:
    """Refuse non-positive `s` or `bandwidth` (inside jit, via `eqx.error_if`)."""
    if not isinstance(mix, KernelMixture):
        raise TypeError(f"`{name}` must be a `KernelMixture`, got {type(mix).__name__}.")
    s = eqx.error_if(
        mix.s, ~((mix.s > 0) & (mix.bandwidth > 0)), f"`{name}` needs s > 0 and bandwidth > 0."
    )
    return eqx.tree_at(lambda m: m.s, mix, s)


def check_same_d(q: Gaussian, *others: tuple[str, KernelMixture | Gaussian]) -> None:
    if not isinstance(q, Gaussian):
        raise TypeError(f"`q` must be a `jaxflow.data.Gaussian`, got {type(q).__name__}.")
    check_gaussian(q, "q")
    for name, other in others:
        if not isinstance(other, (KernelMixture, Gaussian)):
            raise TypeError(
                f"`{name}` must be a `KernelMixture` or a `jaxflow.data.Gaussian`, got "
                f"{type(other).__name__}."
            )
        if isinstance(other, Gaussian):
            check_gaussian(other, name)

        d = other.points.shape[-1] if isinstance(other, KernelMixture) else other.mean.shape[-1]
        if d != q.mean.shape[-1]:
            raise ValueError(
                f"`{name}` has dimension {d} but `q` has dimension {q.mean.shape[-1]}."
            )


# ---------------------------------------------------------------------------------------
# The overlaps. Every term of the squared L2 distance is a Gaussian overlap
#   int N(x; a, A) N(x; b, B) dx = N(a; b, A + B),
# returned as a log (the overlaps are ~e^-130 at d = 100) with a first-order bound on
# its relative error, so that a signed sum of them can say whether its sign is certain.
# ---------------------------------------------------------------------------------------


def _unit(dtype) -> float:
    return float(jnp.finfo(dtype).eps) / 2


def log_cross(
    spec: Spectrum,
    points: Float[Array, "N d"],
    var: Float[Array, ""],
    mask: Bool[Array, " N"] | None = None,
):
    r"""$\ln \sum_i \mathcal N(x_i; \mu, \Sigma + v I)$ and a bound on its relative error,
    over the points that `mask` keeps (all by default).

    One rotation $z_i = V^\top (x_i - \mu)$ per point, $O(N d^2)$ in all, and no inverse.
    The bound adds, to first order and in the worst case, the rounding of the rotation
    ($\sqrt d \gamma_d |y|^2 / w_{\min}$), of the sums over coordinates, and the backward
    error of the eigendecomposition ($d u \lambda_{\max}$ in each eigenvalue).
    """
    d = spec.evals.shape[-1]
    y = points - spec.mean
    scaled = jnp.matmul(
        y, spec.evecs * _quadratic_scale(spec.evals, d, var), precision=lax.Precision.HIGHEST
    )
    return _log_cross_from(spec.evals, scaled, jnp.sum(y * y, axis=-1), var, mask)


def _quadratic_scale(evals, r: int, var):
    r"""The scale $s_k$ of the top `r` eigenvectors' coordinates $z_k$ such that the
    quadratic form of $\Sigma + vI$ is $\sum_k s_k^2 z_k^2$ ($r = d$:
    $s_k^2 = 1 / w_k$, $w_k = \lambda_k + v$) or $\lvert y \rvert^2 / v - \sum_k s_k^2 z_k^2$
    ($r < d$, the other eigenvalues zero: $s_k^2 = 1/v - 1/w_k = \lambda_k / (v w_k)$,
    formed without cancellation). Folded into the rotation's matrix, the form costs one
    pass over the rotated points."""
    d = evals.shape[-1]
    top = evals[d - r :]
    if r == d:
        return 1.0 / jnp.sqrt(top + var)
    return jnp.sqrt(top / (var * (top + var)))


def _log_cross_from(evals, scaled, y2, var, mask=None):
    """The log-sum-exp of `log_cross` from the rotated points on the top `r` eigenvectors
    (the last `r` of `evals`), scaled by `_quadratic_scale`, and the squared norms `y2`.
    With `r < d` the other eigenvalues count as zero: the rest of $|y|^2$ lies in the
    kernel's $vI$. Rows that `mask` drops count as absent (and in no maximum of the
    bound)."""
    d, r = evals.shape[-1], scaled.shape[-1]
    u = _unit(scaled.dtype)
    w = evals + var
    quad = jnp.sum(scaled * scaled, axis=-1)
    if r < d:
        quad = jnp.maximum(y2 / var - quad, 0.0)
    log_w = jnp.log(w)
    log_density = -0.5 * (d * _LOG_2PI + jnp.sum(log_w) + quad)
    if mask is not None:
        log_density = jnp.where(mask, log_density, -jnp.inf)
        y2, quad = jnp.where(mask, y2, 0.0), jnp.where(mask, quad, 0.0)
    w_min = jnp.min(w)
    y2_max = jnp.max(y2)
    q_max = jnp.max(quad)
    eta = (
        (d + 4)
        * u
        * (
            0.5 * d * (_LOG_2PI + jnp.max(jnp.abs(log_w)))
            + q_max
            + (math.sqrt(d) + 2) * y2_max / w_min
            + d * jnp.max(evals) / w_min * (1.0 + q_max)
        )
    )
    return jsp.logsumexp(log_density), jnp.log(eta)


class Centred(eqx.Module):
    """A sample centred at its mean, with the centred points' squared norms: what
    `log_cross_shared` needs of it, formed once for any number of calls."""

    centre: Float[Array, " d"]
    points: Float[Array, "N d"]
    norms: Float[Array, " N"]


def centred(points: Float[Array, "N d"]) -> Centred:
    centre = jnp.mean(points, axis=0)
    x = points - centre
    return Centred(centre, x, jnp.sum(x * x, axis=-1))


def log_cross_shared(
    spectra: list[Spectrum], ranks: list[int], sample: Centred, variances: list
) -> list[tuple[Float[Array, ""], Float[Array, ""]]]:
    r"""`log_cross` of one sample (`centred(points)`) against several Gaussians at once.

    One matmul rotates the centred sample onto the top `ranks[c]` eigenvectors of every
    covariance $c$ together: a Gaussian of rank $r < d$ (such as [H]'s generated $q$,
    rank $\le n - 1$) needs only those, since on the rest of $\mathbb R^d$ the covariance
    $\Sigma + vI$ is $vI$, so the cost is $O(N d \sum_c r_c)$ rather than $O(N d^2)$ per
    Gaussian. $|x_i - \mu|^2$ comes from
    $|x_i - \bar x|^2 - 2 (x_i - \bar x) \cdot (\mu - \bar x) + |\mu - \bar x|^2$, which keeps
    full relative accuracy on centred points. Each quadratic form's weights are folded
    into the rotation (`_quadratic_scale`), so that each costs one pass over its rotated
    points.
    """
    centre, x, norms = sample.centre, sample.points, sample.norms
    tops = [
        spec.evecs[:, spec.evals.shape[-1] - r :] * _quadratic_scale(spec.evals, r, var)
        for spec, r, var in zip(spectra, ranks, variances)
    ]
    shifts = jnp.stack([spec.mean - centre for spec in spectra])
    rotated = jnp.matmul(
        x, jnp.concatenate(tops + [shifts.T], axis=1), precision=lax.Precision.HIGHEST
    )
    out, start = [], 0
    for c, (spec, r, var) in enumerate(zip(spectra, ranks, variances)):
        scaled = rotated[:, start : start + r] - shifts[c] @ tops[c]
        start += r
        y2 = norms - 2 * rotated[:, -len(spectra) + c] + shifts[c] @ shifts[c]
        out.append(_log_cross_from(spec.evals, scaled, y2, var))
    return out


# The reference implementation summed its kernel self term over squares of this many
# points (docs/conventions.md#reference-arithmetic). `log_pairs`' blocks are a whole number
# of such squares, so that one pass over the pairs can serve both arithmetics.
REFERENCE_BLOCK = 25
# The reference adds its squares' sums into a float32 total of at least 1 (its first
# square holds a diagonal term, e^0). A square of terms all below e^_NEGLIGIBLE sums to
# under a quarter of the total's last place (2^-25 / 625 each), so rounds away exactly,
# and a diagonal square of such terms sums to its count of ones.
_NEGLIGIBLE = math.log(2.0**-25 / REFERENCE_BLOCK**2)


def _block_layout(size: int, block_size: int) -> tuple[int, int]:
    """`(blocks, b)`: `blocks` blocks of `b` rows cover `size` rows, `b` a multiple of
    `REFERENCE_BLOCK` (at most `block_size + REFERENCE_BLOCK - 1`)."""
    blocks = max(1, math.ceil(size / block_size))
    b = math.ceil(size / blocks)
    return blocks, REFERENCE_BLOCK * math.ceil(b / REFERENCE_BLOCK)


class PairSums(eqx.Module):
    r"""A sample's sums over pairs of points, $\sum_{i \ne j} \exp(-\lvert x_i - x_j
    \rvert^2 / 4v)$, which do not depend on any $q$ (from
    [`jaxflow.estimators.pair_sums`][]).

    **Fields:**

    - `log_sum`: the sum's log.
    - `log_error`: the log of a bound on its relative rounding error.
    - `squares`: `None`, or the float32 sums over every square of $25 \times 25$ points,
      diagonal included, that the reference arithmetic adds up. Squares of a block
      whose every off-diagonal term lies below $2^{-25} / 625$, too small to change the
      reference's float32 total, hold their diagonal's count of ones alone.
    """

    log_sum: Float[Array, ""]
    log_error: Float[Array, ""]
    squares: Float[Array, "B B"] | None


def pair_sums(
    mix: KernelMixture, *, gram_dtype=None, block_size: int = 1024, reference_blocks: bool = False
) -> PairSums:
    r"""The pair sums of a kernel mixture's points at its kernel variance $v = \varepsilon^2$
    ([`jaxflow.estimators.PairSums`][]): the $O(N^2 d)$ part of its self-overlap,
    $\sum_{i \ne j} e^{-\lvert x_i - x_j \rvert^2 / 4v}$, in one pass over blocks of pairs
    (one matmul and one pass of exponentials each). Computed once, they can be passed to
    [`jaxflow.estimators.one_step_distances`][] (`reference_pairs`), e.g. once per
    reference sample for both the exact and the reference arithmetic.

    **Arguments:**

    - `mix`: a [`jaxflow.estimators.KernelMixture`][] (its `mask`, if any, is honoured).
    - `gram_dtype`: the dtype of the matmul and the exponentials; default the points'.
      float32 is about twice as fast on CPU; `log_error` bounds its rounding.
    - `block_size`: the pairs are formed in square blocks of about this many points.
    - `reference_blocks`: also form the reference arithmetic's float32 sums over every
      square of $25 \times 25$ points (`squares`).

    **Returns:** a [`jaxflow.estimators.PairSums`][].
    """
    if not isinstance(reference_blocks, bool):
        raise TypeError(f"`reference_blocks` must be True or False, got {reference_blocks!r}.")
    mix = check_mixture(mix, "mix")
    check_gram_dtype(gram_dtype)
    check_int(block_size, "block_size", minimum=1)
    return mixture_pair_sums(
        mix, gram_dtype=gram_dtype, block_size=block_size, reference_blocks=reference_blocks
    )


def mixture_pair_sums(mix: KernelMixture, **options) -> PairSums:
    """`_pair_sums` of the mixture's points (as given) at its kernel variance."""
    points = mix.points
    return _pair_sums(points, mix.eps2.astype(points.dtype), mask=mix.mask, **options)


def _pair_sums(
    points: Float[Array, "N d"],
    var: Float[Array, ""],
    *,
    mask: Bool[Array, " N"] | None = None,
    gram_dtype=None,
    block_size: int = 1024,
    reference_blocks: bool = False,
) -> PairSums:
    r"""$\ln \sum_{i \ne j} \exp(-\lvert x_i - x_j \rvert^2 / 4v)$ over ordered pairs of
    the points that `mask` keeps (all by default), and a bound on its relative error.

    The exponents come straight out of one matmul per block: with the points centred at
    their mean, $-\lvert x_i - x_j \rvert^2 / 4v = a_i \cdot b_j$ for
    $a_i = (x_i / 2v, -\lvert x_i \rvert^2 / 4v, -1)$ and
    $b_j = (x_j, 1, \lvert x_j \rvert^2 / 4v)$ (the Gram identity, with the norms folded
    in), so no $N^2 d$ tensor of differences is formed and each block costs one matmul
    and one pass of exponentials. Only the blocks on and above the diagonal are formed
    (the others are their transposes), as a running log-sum-exp over a `lax.scan`;
    memory is one `block_size` square whatever $N$. Each block's exponentials are
    shifted by the running log-sum itself (plus a margin), which is never below the
    largest term so far; a block that would overflow is redone with its own maximum.

    `gram_dtype` sets the precision of the matmul and the exponentials (default: the
    points' dtype); float32 is about twice as fast on CPU. The rounding of each exponent is
    at most $e_{\max} = (d + 12)\, u\, (\max_i \lvert x_i \rvert^2 / v + 1)$ (Higham's
    bound for a dot product of $d + 2$ terms, plus the rounding of the inputs and of
    the shift), so the returned bound is $\operatorname{expm1}(e_{\max})$ plus the
    rounding of the sums and of the terms flushed to zero below the shift.

    With `reference_blocks`, also the float32 sums of $\exp(-\lvert x_i - x_j \rvert^2 / 4v)$
    over every square of $25 \times 25$ points, diagonal included, shape $(B, B)$ with
    $B = \lceil N / 25 \rceil$: the terms that the reference arithmetic adds up
    (docs/conventions.md#reference-arithmetic), taken from the same matmul and
    exponentials (each square's shifted sum times $e^{\text{shift}}$), so that both
    arithmetics cost one pass over the pairs. A padded row's squares add exact zeros, and
    the squares of a block with no term above $2^{-25} / 625$ (which cannot change the
    reference's float32 total, at least 1) are not reduced: they hold their diagonal's
    count alone.

    **Returns:** a `PairSums`.
    """
    size, d = points.shape
    dtype = points.dtype
    gram_dtype = dtype if gram_dtype is None else jnp.dtype(gram_dtype)
    blocks, b = _block_layout(size, block_size)
    per = b // REFERENCE_BLOCK
    padded = blocks * b
    if mask is None:
        x = points - jnp.mean(points, axis=0)
        valid = jnp.arange(padded) < size
    else:
        # Centred at the kept points' mean; padding rows zeroed, so that their (unused)
        # exponents stay finite.
        _, _, x = masked_moments(points, mask)
        valid = jnp.pad(mask, (0, padded - size))
    if size < 2:
        minus_inf = jnp.asarray(-jnp.inf, dtype)
        squares = jnp.diag(valid[:1].astype(jnp.float32)) if reference_blocks else None
        return PairSums(minus_inf, minus_inf, squares)
    norms = jnp.sum(x * x, axis=-1)
    scale = 0.25 / var
    ones = jnp.ones_like(norms)[:, None]
    left = jnp.concatenate([x * (2 * scale), -(norms * scale)[:, None], -ones], axis=1)
    right = jnp.concatenate([x, ones, (norms * scale)[:, None]], axis=1)
    pad = ((0, padded - size), (0, 0))
    left, right = jnp.pad(left.astype(gram_dtype), pad), jnp.pad(right.astype(gram_dtype), pad)
    rows, cols = np.triu_indices(blocks)
    # The shift sits `margin` above the running log-sum, so a new term may exceed the sum
    # so far by e^(margin + 88) before exp overflows float32 (then the block is redone
    # with its own maximum); terms below e^(margin - 87) of the running sum flush to zero,
    # at most blocks^2 b^2 of them, which the error bound counts.
    margin = 8.0

    def exponents(i, j):
        a, c = lax.dynamic_slice_in_dim(left, i * b, b), lax.dynamic_slice_in_dim(right, j * b, b)
        vi, vj = (
            lax.dynamic_slice_in_dim(valid, i * b, b),
            lax.dynamic_slice_in_dim(valid, j * b, b),
        )
        exponent = jnp.matmul(a, c.T, precision=lax.Precision.HIGHEST)
        keep = vi[:, None] & vj[None, :] & ((i != j) | ~jnp.eye(b, dtype=bool))
        return jnp.where(keep, exponent, -jnp.inf)

    def shifted_sums(exponent, shift):
        """The block's sum of exp(exponent - shift), and its squares' sums unshifted."""
        terms = jnp.exp(exponent - shift.astype(gram_dtype))
        # Row sums as a matrix-vector product: XLA:CPU runs it several times faster than
        # a reduction over the block.
        rows = jnp.matmul(terms, jnp.ones((b,), gram_dtype))
        total = jnp.sum(rows.astype(dtype))
        if not reference_blocks:
            return total, None

        def squares(_):
            runs = terms.reshape(b, per, REFERENCE_BLOCK).sum(axis=-1)
            part = runs.reshape(per, REFERENCE_BLOCK, per).sum(axis=1)
            return (part.astype(dtype) * jnp.exp(shift)).astype(jnp.float32)

        # No term above e^_NEGLIGIBLE (a row sums to at least its largest): the squares
        # cannot change the reference's float32 total, so their reduction is skipped.
        negligible = shift + jnp.log(jnp.max(rows).astype(dtype)) < _NEGLIGIBLE
        part = lax.cond(negligible, lambda _: jnp.zeros((per, per), jnp.float32), squares, None)
        return total, part

    def own_max(exponent):
        top = jnp.max(exponent).astype(dtype)
        top = jnp.where(jnp.isfinite(top), top, 0.0)
        return (top, *shifted_sums(exponent, top))

    def block(running, ij):
        i, j = ij
        exponent = exponents(i, j)
        shift = running + margin
        safe = jnp.where(jnp.isfinite(shift), shift, 0.0)
        total, part = shifted_sums(exponent, safe)
        ok = jnp.isfinite(shift) & jnp.isfinite(total)
        shift, total, part = lax.cond(ok, lambda _: (safe, total, part), own_max, exponent)
        # Blocks off the diagonal stand for themselves and their transposes.
        log_block = shift + jnp.log(total) + jnp.where(i == j, 0.0, math.log(2.0))
        return jnp.logaddexp(running, log_block), part

    if blocks == 1:
        # One block (a training set): no running shift, no scan to compile.
        shift, total, part = own_max(exponents(0, 0))
        lse = shift + jnp.log(total)
        parts = None if part is None else part[None]
    else:
        start = jnp.asarray(-jnp.inf, dtype)
        lse, parts = lax.scan(block, start, (jnp.asarray(rows), jnp.asarray(cols)))
    u = _unit(gram_dtype)
    e_max = (d + 12) * u * (jnp.max(jnp.where(valid[:size], norms, 0.0)) / var + 1.0)
    eta = (
        jnp.expm1(e_max)
        + (b + 8) * u
        + 8 * _unit(dtype) * (1.0 + jnp.abs(lse))
        + blocks**2 * b**2 * math.exp(margin - 87.0)
    )
    if not reference_blocks:
        return PairSums(lse, jnp.log(eta), None)
    # The squares of the blocks below the diagonal are those above it, transposed; the
    # diagonal blocks keep their own (the Gram identity rounds a_i.b_j and a_j.b_i apart).
    squares = jnp.zeros((blocks, blocks, per, per), jnp.float32)
    squares = squares.at[cols, rows].set(parts.transpose(0, 2, 1)).at[rows, cols].set(parts)
    squares = squares.transpose(0, 2, 1, 3).reshape(blocks * per, blocks * per)
    # The diagonal's terms are exp(0) = 1, one per kept point.
    counts = valid.reshape(-1, REFERENCE_BLOCK).sum(axis=1, dtype=jnp.float32)
    squares = squares + jnp.diag(counts)
    kept = math.ceil(size / REFERENCE_BLOCK)
    return PairSums(lse, jnp.log(eta), squares[:kept, :kept])


def log_self_diagonal(d: int, scale2: Float[Array, ""]) -> Float[Array, ""]:
    r"""$\ln (4\pi c^2 s^2)^{-d/2}$: the diagonal of a mixture's self-overlap, and $\int p^2$
    for $p = \mathcal N(m, s^2 I)$. One expression for both, so that equal inputs give
    bitwise equal logs."""
    return -0.5 * d * jnp.log(4 * math.pi * scale2)


def _isotropic_variance(cov: Float[Array, "d d"]) -> tuple[Bool[Array, ""], Float[Array, ""]]:
    var = cov[0, 0]
    return jnp.all(cov == var * jnp.eye(cov.shape[-1], dtype=cov.dtype)), var


def log_square_integral(
    p: Gaussian, rtol: float | None = None
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    r"""$\ln \int p^2 = \ln \mathcal N(0; 0, 2\Sigma)$ ($+\infty$ if $\Sigma$ is singular) and a
    bound on its relative error. An exactly isotropic $\Sigma = s^2 I$ goes through
    [`log_self_diagonal`][], so that it cancels a mixture's diagonal exactly."""
    d = p.mean.shape[-1]
    u = _unit(p.cov.dtype)
    iso, var = _isotropic_variance(p.cov)
    spec = spectrum(p, rtol)
    safe = jnp.where(spec.evals > 0, spec.evals, 1.0)
    general = -0.5 * jnp.sum(jnp.log(4 * math.pi * safe))
    general = jnp.where(spec.singular, jnp.inf, general)
    value = jnp.where(iso, log_self_diagonal(d, jnp.where(iso, var, 1.0)), general)
    eta = (d + 4) * u * (1.0 + jnp.abs(value)) * (1.0 + d * jnp.max(spec.evals) / jnp.min(safe))
    return value, jnp.log(jnp.where(iso, (d + 4) * u * (1.0 + jnp.abs(value)), eta))


def log_gaussian_cross(q: Gaussian, r: Gaussian):
    r"""$\ln \int q\, r = \ln \mathcal N(\mu_q; \mu_r, \Sigma_q + \Sigma_r)$ and a bound on
    its relative error (one eigendecomposition of $\Sigma_q + \Sigma_r$)."""
    joint = spectrum(Gaussian(r.mean, q.cov + r.cov))
    return log_cross(joint, q.mean[None, :], jnp.zeros((), r.cov.dtype))


class L2Terms(eqx.Module):
    """The terms of $D(q, r) = \\int q^2 - 2\\int q r + \\int r^2$ as logs, with signs and
    relative-error bounds, in the order `square_q`, `cross`, `self_diagonal`, `self_pairs`."""

    log_terms: Float[Array, " 4"]
    signs: Float[Array, " 4"]
    log_eta: Float[Array, " 4"]


def l2_terms(
    q: Gaussian, r: Gaussian | KernelMixture, *, rtol=None, gram_dtype=None, block_size=1024
) -> L2Terms:
    d = q.mean.shape[-1]
    dtype = q.cov.dtype
    spec = spectrum(q, rtol)
    safe = jnp.where(spec.evals > 0, spec.evals, 1.0)
    log_q2 = jnp.where(spec.singular, jnp.inf, -0.5 * jnp.sum(jnp.log(4 * math.pi * safe)))
    eta_q2 = (
        (d + 4)
        * _unit(dtype)
        * (1.0 + jnp.abs(log_q2))
        * (1.0 + d * jnp.max(spec.evals) / jnp.min(safe))
    )
    if isinstance(r, KernelMixture):
        var = r.eps2.astype(dtype)
        cross, eta_cross = log_cross(spec, r.points.astype(dtype), var, r.mask)
        cross = cross - r.log_count
        diag = log_self_diagonal(d, r.scale2.astype(dtype))
        eta_diag = jnp.log((d + 4) * _unit(dtype) * (1.0 + jnp.abs(diag)))
        pairs = _pair_sums(
            r.points.astype(dtype), var, mask=r.mask, gram_dtype=gram_dtype, block_size=block_size
        )
        pairs, eta_pairs = diag - r.log_count + pairs.log_sum, pairs.log_error
    else:
        cross, eta_cross = log_gaussian_cross(q, r)
        diag, eta_diag = log_square_integral(r, rtol)
        pairs, eta_pairs = jnp.asarray(-jnp.inf, dtype), jnp.asarray(-jnp.inf, dtype)
    return L2Terms(
        log_terms=jnp.stack([log_q2, math.log(2.0) + cross, diag, pairs]),
        signs=jnp.asarray([1.0, -1.0, 1.0, 1.0], dtype),
        log_eta=jnp.stack([jnp.log(eta_q2), eta_cross, eta_diag, eta_pairs]),
    )


def log_l2_distance(
    q: Gaussian, r: Gaussian | KernelMixture, *, rtol: float | None = None
) -> Float[Array, ""]:
    r"""$\ln D(q, r)$, the log of the squared $L^2$ distance of
    [`jaxflow.estimators.l2_distance`][], for dimensions where $D$ itself underflows
    (at $d = 100$, $D \approx e^{-127}$, below the float32 range). $+\infty$ if $q$ or $r$
    is degenerate; $-\infty$ if rounding leaves the computed $D \le 0$ ($q = r$ to
    working precision)."""
    check_same_d(q, ("r", r))
    check_tolerance(rtol, "rtol")
    return _log_l2_distance(q, r, rtol)


@eqx.filter_jit
def _log_l2_distance(q: Gaussian, r: Gaussian | KernelMixture, rtol) -> Float[Array, ""]:
    if isinstance(r, KernelMixture):
        r = check_mixture(r, "r")
    terms = l2_terms(q, r, rtol=rtol)
    infinite = jnp.any(jnp.isposinf(terms.log_terms))
    log_abs, sign = signed_logsumexp(jnp.where(infinite, -jnp.inf, terms.log_terms), terms.signs)
    return jnp.where(infinite, jnp.inf, jnp.where(sign > 0, log_abs, -jnp.inf))


def l2_distance(
    q: Gaussian, r: Gaussian | KernelMixture, *, rtol: float | None = None
) -> Float[Array, ""]:
    r"""The exact squared $L^2$ distance between a Gaussian $q = \mathcal N(\mu, \Sigma)$
    and a Gaussian or a Gaussian kernel mixture $r$ ([H], Section 4;
    docs/models.md#relative-distance),

    $$D(q, r) = \int (q - r)^2 = \int q^2 - 2 \int q\, r + \int r^2.$$

    Every term is a Gaussian overlap, $\int \mathcal N(x; a, A)\, \mathcal N(x; b, B)\, dx
    = \mathcal N(a; b, A + B)$. For $r = p_S^\varepsilon$ (a
    [`jaxflow.estimators.KernelMixture`][]):

    $$\int q^2 = \mathcal N(0; 0, 2\Sigma), \qquad
    \int q\, r = \frac1N \sum_i \mathcal N(x_i; \mu, \Sigma + \varepsilon^2 I), \qquad
    \int r^2 = \frac{1}{N^2} \sum_{i, j} \mathcal N(x_i; x_j, 2\varepsilon^2 I).$$

    All are computed in log space (they sit near $e^{-130}$ at $d = 100$), the sums over
    points as log-sum-exps, and combined by a signed log-sum-exp. One eigendecomposition
    of $\Sigma$ serves $2\Sigma$ and every $\Sigma + \varepsilon^2 I$, so the cross term
    costs $O(N d^2)$ and no inverse; the pairwise term costs $O(N^2 d)$ in matmuls.

    **Arguments:**

    - `q`: a [`jaxflow.data.Gaussian`][].
    - `r`: a [`jaxflow.data.Gaussian`][] or a [`jaxflow.estimators.KernelMixture`][] of
      the same dimension.
    - `rtol`: eigenvalues of a covariance at most `rtol` times its largest count as zero.
      Default [`jaxflow.estimators.default_rtol`][].

    **Returns:** $D(q, r) \ge 0$, a scalar in the inputs' dtype; $+\infty$ when $q$ or a
    Gaussian $r$ is degenerate (no density: $\int q^2$ diverges).

    !!! note
        $D$ underflows to 0 in float32 beyond $d \approx 60$; use
        [`jaxflow.estimators.log_l2_distance`][]. To compare two distances to the same
        $q$, use [`jaxflow.estimators.relative_distance`][], which never forms either.
    """
    return jnp.exp(log_l2_distance(q, r, rtol=rtol))

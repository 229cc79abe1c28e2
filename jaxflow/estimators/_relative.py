import math
from typing import Literal

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from .._checks import check_choice, check_gram_dtype, check_int
from .._numerics import log_diff_exp, signed_logsumexp
from ..data import Gaussian
from ._kernel import (
    _pair_sums,
    _unit,
    check_mixture,
    check_same_d,
    KernelMixture,
    log_cross,
    log_gaussian_cross,
    log_self_diagonal,
    log_square_integral,
    PairSums,
    Spectrum,
    spectrum,
)
from ._reference import reference_delta


ARITHMETICS = ("exact", "reference")
Arithmetic = Literal["exact", "reference"]

TERMS = (
    "self_train",
    "self_reference",
    "pairs_train",
    "pairs_reference",
    "cross_train",
    "cross_reference",
)
"""The terms of $\\Delta$ in the order of `RelativeDistance.log_terms`."""

# The sign with which each term enters Delta = D(q, p_S) - D(q, p_O).
_SIGNS = (1.0, -1.0, 1.0, -1.0, -1.0, 1.0)


class RelativeDistance(eqx.Module):
    r"""The relative distance $\Delta = D(q, p_S^\varepsilon) - D(q, r)$ of
    [`jaxflow.estimators.relative_distance`][], with the terms it was formed from.

    Batched results (from `jax.vmap`) carry leading axes on every array.

    **Fields:**

    - `sign`: the sign of $\Delta$: $+1$ (generalization), $-1$ (memorization) or 0.
    - `log_abs`: $\ln \lvert\Delta\rvert$ ($-\infty$ when $\Delta = 0$).
    - `log_terms`: the log-magnitude of each term, shape `(..., 6)`, in the order of
      `TERMS`: `self_train`, `self_reference` (the diagonal of each mixture's
      self-overlap, or $\int p^2$), `pairs_train`, `pairs_reference` (their off-diagonal
      parts), `cross_train`, `cross_reference` ($2\int q\, r$). $-\infty$ for an absent
      term.
    - `signs`: the sign with which each term enters $\Delta$, shape `(..., 6)`.
    - `log_error`: the log of a first-order worst-case bound on the rounding error of
      $\Delta$.
    - `certain`: whether $\lvert\Delta\rvert$ exceeds that bound, so that the sign is
      right whatever the rounding.
    - `arithmetic`: `"exact"` or `"reference"` (see [`jaxflow.estimators.relative_distance`][]).
    """

    sign: Float[Array, "*batch"]
    log_abs: Float[Array, "*batch"]
    log_terms: Float[Array, "*batch 6"]
    signs: Float[Array, "*batch 6"]
    log_error: Float[Array, "*batch"]
    certain: Bool[Array, "*batch"]
    arithmetic: str = eqx.field(static=True, default="exact")

    @classmethod
    def bounded(cls, sign, log_abs, log_terms, log_error, arithmetic: str) -> "RelativeDistance":
        r"""The result with `signs` in the order of `TERMS` and `certain` derived: the sign
        is certain when $\lvert\Delta\rvert$ exceeds the rounding bound."""
        return cls(
            sign=sign,
            log_abs=log_abs,
            log_terms=log_terms,
            signs=jnp.asarray(_SIGNS, log_terms.dtype),
            log_error=log_error,
            certain=(sign != 0) & (log_abs > log_error),
            arithmetic=arithmetic,
        )

    @property
    def delta(self) -> Float[Array, "*batch"]:
        r"""$\Delta$ itself; it underflows to 0 in float32 (use `sign` and `log_abs`)."""
        return self.sign * jnp.exp(self.log_abs)

    @property
    def positive(self) -> Bool[Array, "*batch"]:
        r"""$\Delta > 0$: the generalization regime."""
        return self.sign > 0


def combine_terms(
    log_terms: Float[Array, " 6"], log_eta: Float[Array, " 6"], arithmetic: str = "exact"
) -> RelativeDistance:
    """Sum the six signed terms of Delta in log space, with an error bound.

    The two diagonal self terms are paired first with `log_diff_exp`: when they are
    analytically equal they are computed by the same expression from the same inputs,
    so they cancel exactly and leave neither a term nor an error.
    """
    dtype = log_terms.dtype
    signs = jnp.asarray(_SIGNS, dtype)
    self_log, self_sign = log_diff_exp(log_terms[0], log_terms[1])
    self_error = jnp.where(
        self_sign == 0,
        -jnp.inf,
        jnp.logaddexp(log_terms[0] + log_eta[0], log_terms[1] + log_eta[1]),
    )
    rest = log_terms[2:]
    combined = jnp.concatenate([self_log[None], rest])
    combined_signs = jnp.concatenate([self_sign[None], signs[2:]])
    log_abs, sign = signed_logsumexp(combined, combined_signs)
    magnitude, _ = signed_logsumexp(combined, jnp.abs(combined_signs))
    errors = jnp.concatenate(
        [self_error[None], rest + log_eta[2:], (magnitude + math.log(8 * _unit(dtype)))[None]]
    )
    errors = jnp.where(jnp.isnan(errors), -jnp.inf, errors)
    log_error, _ = signed_logsumexp(errors, jnp.ones_like(errors))
    return RelativeDistance.bounded(sign, log_abs, log_terms, log_error, arithmetic)


class MixtureTerms(eqx.Module):
    """The parts of a kernel mixture's distance to any q that do not depend on q: the
    log of its self-overlap's diagonal and off-diagonal parts, with error bounds."""

    self_diagonal: Float[Array, ""]
    self_eta: Float[Array, ""]
    pairs: Float[Array, ""]
    pairs_eta: Float[Array, ""]


def mixture_terms(
    mix: KernelMixture,
    dtype,
    *,
    gram_dtype=None,
    block_size: int = 1024,
    pairs: PairSums | None = None,
) -> MixtureTerms:
    """The mixture's q-independent terms; its pair sums `pairs` when computed already."""
    d = mix.d
    diag = log_self_diagonal(d, mix.scale2.astype(dtype))
    if pairs is None:
        pairs = _pair_sums(
            mix.points.astype(dtype),
            mix.eps2.astype(dtype),
            mask=mix.mask,
            gram_dtype=gram_dtype,
            block_size=block_size,
        )
    lse, eta = pairs.log_sum.astype(dtype), pairs.log_error.astype(dtype)
    # (1/N^2) (4 pi eps^2)^(-d/2) = (4 pi c^2 s^2)^(-d/2) / N under the bandwidth rule.
    return MixtureTerms(
        self_diagonal=diag,
        self_eta=jnp.log((d + 4) * _unit(dtype) * (1.0 + jnp.abs(diag))),
        pairs=diag - mix.log_count + lse,
        pairs_eta=eta,
    )


def gaussian_terms(p: Gaussian, dtype) -> MixtureTerms:
    p = Gaussian(p.mean.astype(dtype), p.cov.astype(dtype))
    value, eta = log_square_integral(p)
    minus_inf = jnp.asarray(-jnp.inf, dtype)
    return MixtureTerms(self_diagonal=value, self_eta=eta, pairs=minus_inf, pairs_eta=minus_inf)


def cross_terms(spec: Spectrum, mix: KernelMixture, dtype):
    """$\\ln 2\\int q\\, p_S^\\varepsilon$ and its error bound."""
    lse, eta = log_cross(spec, mix.points.astype(dtype), mix.eps2.astype(dtype), mix.mask)
    return math.log(2.0) + lse - mix.log_count, eta


def exact_relative(
    q: Gaussian,
    spec: Spectrum,
    train: KernelMixture,
    train_terms: MixtureTerms,
    reference: KernelMixture | Gaussian,
    reference_terms: MixtureTerms,
    reference_cross=None,
) -> RelativeDistance:
    """Delta from the q-independent terms of both mixtures; `reference_cross` is the
    reference's cross term `(log 2 int q r, log eta)` when computed already."""
    dtype = spec.evals.dtype
    cross_train, eta_train = cross_terms(spec, train, dtype)
    if reference_cross is not None:
        cross_ref, eta_ref = reference_cross
    elif isinstance(reference, KernelMixture):
        cross_ref, eta_ref = cross_terms(spec, reference, dtype)
    else:
        p = Gaussian(reference.mean.astype(dtype), reference.cov.astype(dtype))
        cross_ref, eta_ref = log_gaussian_cross(q, p)
        cross_ref = math.log(2.0) + cross_ref
    log_terms = jnp.stack(
        [
            train_terms.self_diagonal,
            reference_terms.self_diagonal,
            train_terms.pairs,
            reference_terms.pairs,
            cross_train,
            cross_ref,
        ]
    )
    log_eta = jnp.stack(
        [
            train_terms.self_eta,
            reference_terms.self_eta,
            train_terms.pairs_eta,
            reference_terms.pairs_eta,
            eta_train,
            eta_ref,
        ]
    )
    return combine_terms(log_terms, log_eta)


def relative_distance(
    q: Gaussian,
    train: KernelMixture,
    reference: KernelMixture | Gaussian,
    *,
    arithmetic: str = "exact",
    gram_dtype=None,
    block_size: int = 1024,
) -> RelativeDistance:
    r"""The relative distance of [H] (Section 4; docs/models.md#relative-distance) between the
    generated distribution $q$, the kernel approximation of its training set $S$, and a
    reference $r$:

    $$\Delta = D(q, p_S^\varepsilon) - D(q, r), \qquad r = p_O^\varepsilon \text{ (a fresh
    sample } O \text{ of } p) \text{ or } r = p,$$

    with $D$ the squared $L^2$ distance of [`jaxflow.estimators.l2_distance`][]. $\Delta > 0$
    means $q$ is closer to the population than to its training set (generalization);
    $\Delta < 0$, closer to its training set (memorization).

    **The terms that differ.** With $D(q, r) = \int q^2 - 2\int q r + \int r^2$ the
    $\int q^2$ cancels exactly (it is $+\infty$ while $q$ is degenerate, $n \le d$, yet
    $\Delta$ is finite), and $\int r^2$ splits into its diagonal
    $\frac1N \mathcal N(0; 0, 2\varepsilon^2 I) = (4\pi c^2 s^2)^{-d/2}$, the same for
    every $N$ under the rule $\varepsilon = c s N^{-1/d}$ and equal to $\int p^2$ for
    $p = \mathcal N(m, s^2 I)$, and its pairs $i \ne j$:

    $$\Delta = \underbrace{\big[\mathrm{diag}_S - \mathrm{diag}_O\big]}_{=\,0}
    + \mathrm{pairs}_S - \mathrm{pairs}_O - 2\int q\, p_S^\varepsilon + 2\int q\, p_O^\varepsilon.$$

    Each term is a log-sum-exp of Gaussian overlaps; they are combined by a signed
    log-sum-exp with a common scale. Subtracting the two distances instead leaves the
    sign of $\Delta$ to rounding: at $d = 100$ each distance (without $\int q^2$) is
    dominated by the diagonal, $e^{-126.6}$, while near $n = d$ $\Delta$ is set by the
    pairs at $e^{-157}$, 13 decimal digits below, so the subtraction keeps three digits
    in float64 and none in float32 (with $\int q^2 \approx e^{-93}$ for $n > d$, none
    in either). Here the diagonals cancel exactly and $\Delta$ is as accurate as its
    terms (`log_error` bounds the rounding; the sign is `certain` when $|\Delta|$ exceeds
    it). In float32 the same computation gave the float64 sign in all 480 cells of [H]'s
    model tested ($d = 100$, $n$ from 25 to 300, $N_O = 10^4$), with relative errors up
    to $10^{-3}$ in $\Delta$; its worst-case bound is looser, and leaves some of those
    signs not `certain`.

    **Main arguments:**

    - `q`: the generated [`jaxflow.data.Gaussian`][], e.g. from
      [`jaxflow.flows.one_step_gaussian`][].
    - `train`: the training set's [`jaxflow.estimators.KernelMixture`][].
    - `reference`: a reference sample's [`jaxflow.estimators.KernelMixture`][] (the
      reference implementation used $N_O = 10^4$ points), or the sampling distribution
      $p$ itself as a [`jaxflow.data.Gaussian`][].

    **Other arguments:**

    - `arithmetic`: `"exact"` (default): the computation above. `"reference"`: the
      reference implementation's arithmetic (docs/conventions.md#reference-arithmetic), so that
      a user can measure how much of a published curve is rounding: float32 throughout, each
      distance formed on its own as its self term (all pairs, diagonal included, summed in 25 x
      25 blocks) minus twice its cross term (an explicit inverse of $\Sigma + \varepsilon^2 I$),
      $\int q^2$ dropped, $(2\pi)^{1/2}$ in place of $(2\pi)^{d/2}$ in every normalisation, and
      $\Delta$ as the difference of the two.
    - `gram_dtype`: the dtype of the Gram matmul behind the pairwise terms (default: the
      inputs' dtype). float32 makes that $O(N^2 d)$ step about twice as fast on CPU; its
      rounding enters the error bound, so `certain` stays truthful.
    - `block_size`: the pairwise terms are formed in blocks of this many points.

    **Returns:** a [`jaxflow.estimators.RelativeDistance`][] in the dtype of `q`.

    **Raises:** `ValueError`/`TypeError` for mismatched dimensions, a wrong type or an
    unknown `arithmetic`, a `block_size` that is not a positive int or a `gram_dtype`
    that is not floating; an `EquinoxRuntimeError` for a traced non-positive `s` or
    bandwidth (a concrete one is refused by [`jaxflow.estimators.KernelMixture`][]).

    !!! note
        With `arithmetic="reference"` the terms are the reference's own: `self_train`
        and `self_reference` hold each mixture's whole self term (diagonal included),
        the `pairs` entries are $-\infty$, and `certain` compares $|\Delta|$ with the
        float32 rounding of the two distances.

    **Example:**

    ```python
    import jax, jax.random as jr
    import jaxflow
    from jaxflow.estimators import KernelMixture, relative_distance

    jax.config.update("jax_enable_x64", True)
    d, n = 100, 75
    p = jaxflow.data.Gaussian.isotropic(d, mean=10.0)
    x0, reference = p.sample(n, key=jr.key(0)), p.sample(10_000, key=jr.key(1))
    xt = jaxflow.data.forward_jump(x0, key=jr.key(2), T=2.0, lam=1.0)
    fit = jaxflow.training.fit_affine(x0, xt)
    q = jaxflow.flows.one_step_gaussian(fit, x0, T=2.0, lam=1.0)
    delta = relative_distance(q, KernelMixture(x0), KernelMixture(reference))
    delta.sign, delta.log_abs, delta.certain   # sign of Delta, ln|Delta|, sign certain?
    ```
    """
    check_choice(arithmetic, ARITHMETICS, "arithmetic")
    if not isinstance(train, KernelMixture):
        raise TypeError(f"`train` must be a `KernelMixture`, got {type(train).__name__}.")
    check_same_d(q, ("train", train), ("reference", reference))
    check_gram_dtype(gram_dtype)
    block_size = check_int(block_size, "block_size", minimum=1)
    return _relative_distance(q, train, reference, arithmetic, gram_dtype, block_size)


@eqx.filter_jit
def _relative_distance(
    q: Gaussian,
    train: KernelMixture,
    reference: KernelMixture | Gaussian,
    arithmetic: str,
    gram_dtype,
    block_size: int,
) -> RelativeDistance:
    train = check_mixture(train, "train")
    if isinstance(reference, KernelMixture):
        reference = check_mixture(reference, "reference")
    elif not isinstance(reference, Gaussian):
        raise TypeError(
            "`reference` must be a `KernelMixture` or a `jaxflow.data.Gaussian`, got "
            f"{type(reference).__name__}."
        )
    if arithmetic == "reference":
        return RelativeDistance.bounded(*reference_delta(q, train, reference), "reference")
    dtype = q.cov.dtype
    spec = spectrum(q)
    train_terms = mixture_terms(train, dtype, gram_dtype=gram_dtype, block_size=block_size)
    if isinstance(reference, KernelMixture):
        reference_terms = mixture_terms(
            reference, dtype, gram_dtype=gram_dtype, block_size=block_size
        )
    else:
        reference_terms = gaussian_terms(reference, dtype)
    return exact_relative(q, spec, train, train_terms, reference, reference_terms)

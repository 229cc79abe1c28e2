import dataclasses
import math
from collections.abc import Sequence
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int, Real
from tqdm.auto import tqdm

from .._custom_types import PRNGKey
from ..data import forward_jump, Gaussian
from ..denoisers import fit_affine, one_step_gaussian
from ..denoisers._linear import CONVENTIONS
from ._gaussian import hellinger_squared, kl_divergence
from ._intervals import wilson_interval
from ._kernel import KernelMixture, log_cross_shared, log_gaussian_cross, spectrum
from ._reference import (
    reference_cross_term,
    reference_from_terms,
    reference_gaussian_terms,
    reference_hellinger_squared,
    reference_self_term,
)
from ._relative import (
    _check_arithmetic,
    combine_terms,
    cross_terms,
    gaussian_terms,
    mixture_terms,
    RelativeDistance,
)


# ---------------------------------------------------------------------------------------
# Drawing the inputs of one cell (repetition, n): fixed by the key, the repetition and n.
# ---------------------------------------------------------------------------------------

# fold_in tags: the reference sample of a repetition uses 0, the cell of size n uses n.
_REFERENCE_TAG = 0


def _draw(key: PRNGKey, n: int, d: int, m, s, dtype) -> Float[Array, "n d"]:
    return m + s * jr.normal(key, (n, d), dtype)


def _cell_inputs(key_rep, n: int, d: int, m, s, T, lam, draws: int, dtype):
    k_x, k_z = jr.split(jr.fold_in(key_rep, n))
    x0 = _draw(k_x, n, d, m, s, dtype)
    return x0, forward_jump(k_z, x0, T=T, lam=lam, draws=draws)


def _check_grid(ns: Sequence[int]) -> tuple[int, ...]:
    ns = tuple(int(n) for n in ns)
    if not ns or any(n < 2 for n in ns) or list(ns) != sorted(set(ns)):
        raise ValueError(f"`ns` must be increasing training-set sizes, each >= 2, got {ns}.")
    return ns


def sweep_inputs(
    key: PRNGKey,
    repetition: int,
    n: int,
    *,
    d: int,
    m: Real[ArrayLike, ""] = 10.0,
    s: Real[ArrayLike, ""] = 1.0,
    T: Real[ArrayLike, ""] = 2.0,
    lam: Real[ArrayLike, ""] = 1.0,
    reference_size: int | None = 10_000,
    draws: int = 1,
) -> tuple[Float[Array, "n d"], Float[Array, "n draws d"], Float[Array, "N d"] | None]:
    r"""The inputs of one cell of [`jaxflow.estimators.relative_distance_sweep`][]: the
    training set, its noisy copies and the reference sample, exactly as the sweep drew
    them, so that any cell can be recomputed (by
    [`jaxflow.estimators.relative_distance_arrays`][] or another implementation).

    Repetition $r$ uses the key `jr.fold_in(key, r)`; its reference sample
    $O \sim p^{N_O}$ comes from `fold_in(·, 0)` and is shared by every $n$ of the
    repetition; the training set of size $n$ and its noise come from `fold_in(·, n)`,
    so a cell does not depend on the rest of the grid. Points are
    $m\mathbf 1 + s z$, $z \sim \mathcal N(0, I_d)$, in the default float dtype.

    **Returns:** `(x0, xt, reference)`, shapes `(n, d)`, `(n, draws, d)` and
    `(reference_size, d)` (`None` when `reference_size` is `None`).
    """
    dtype = jnp.result_type(float)
    key_rep = jr.fold_in(key, repetition)
    x0, xt = _cell_inputs(
        key_rep, int(n), d, jnp.asarray(m, dtype), jnp.asarray(s, dtype), T, lam, draws, dtype
    )
    if reference_size is None:
        return x0, xt, None
    reference = _draw(jr.fold_in(key_rep, _REFERENCE_TAG), reference_size, d, m, s, dtype)
    return x0, xt, reference


# ---------------------------------------------------------------------------------------
# One repetition: every n of the grid and every convention, one reference sample.
# ---------------------------------------------------------------------------------------


class _Model(eqx.Module):
    m: Float[Array, ""]
    s: Float[Array, ""]
    T: Float[Array, ""]
    lam: Float[Array, ""]
    bandwidth: Float[Array, ""]


def _p(model: _Model, d: int) -> Gaussian:
    return Gaussian.isotropic(d, model.m, model.s, dtype=model.m.dtype)


@dataclasses.dataclass(frozen=True)
class _Cells:
    """What the cells of a repetition compute (static: hashable, part of the compiled
    program)."""

    d: int
    conventions: tuple[str, ...]
    arithmetic: str
    gram_dtype: object
    block_size: int

    def __call__(self, x0s, xts, reference, model: _Model):
        """Per (n, convention): the RelativeDistance, KL(q || p) and H^2(q, p)."""
        if self.arithmetic == "exact":
            return _exact_cells(x0s, xts, reference, model, self)
        return _reference_cells(x0s, xts, reference, model, self)


def _stack(rows):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *rows)


def _row(tree, i):
    return jax.tree.map(lambda x: x[i], tree)


# The grid is unrolled only where shapes depend on n (the fit, the training set's own
# terms, the rank of q). Everything that sees q alone (eigendecompositions, KL,
# Hellinger, the overlap with p) runs once over the stacked q's of the whole grid with
# `lax.map`: one compiled body however long the grid, and unbatched LAPACK calls.


def _exact_cells(x0s, xts, reference, model: _Model, cells: _Cells):
    d, conventions, block_size = cells.d, cells.conventions, cells.block_size
    dtype = model.m.dtype
    p = _p(model, d)
    n_conv = len(conventions)
    qs = []
    for x0, xt in zip(x0s, xts):
        denoiser = fit_affine(x0, xt)
        qs += [
            one_step_gaussian(denoiser, x0, T=model.T, lam=model.lam, convention=c)
            for c in conventions
        ]
    qs = _stack(qs)
    specs = jax.lax.map(spectrum, qs)
    # For an isotropic p, KL(q || p) depends on q only through its mean and the
    # eigenvalues of its covariance, which the two conventions share: one per n. The
    # Hellinger distance also sees the eigenvectors (through the mean difference).
    kl = jax.lax.map(lambda q: kl_divergence(q, p), _row(qs, slice(None, None, n_conv)))
    hellinger = jax.lax.map(lambda q: hellinger_squared(q, p), qs)
    if reference is None:
        ref_terms = gaussian_terms(p, dtype)
        lse, eta = jax.lax.map(lambda q: log_gaussian_cross(q, p), qs)
        ref_cross = (math.log(2.0) + lse, eta)
    else:
        ref = KernelMixture(reference, model.s, model.bandwidth)
        ref_terms = mixture_terms(ref, dtype, gram_dtype=cells.gram_dtype, block_size=block_size)
        # One matmul per n rotates the reference sample for every convention: q has rank
        # at most n - 1, so only its top min(n - 1, d) eigenvectors are needed.
        crosses = []
        for g, x0 in enumerate(x0s):
            rank = min(x0.shape[0] - 1, d)
            row = [_row(specs, g * n_conv + c) for c in range(n_conv)]
            crosses += log_cross_shared(row, [rank] * n_conv, reference, [ref.eps2] * n_conv)
        lse, eta = (jnp.stack(x) for x in zip(*crosses))
        ref_cross = (math.log(2.0) + lse - math.log(ref.size), eta)
    log_terms, log_eta = [], []
    for g, x0 in enumerate(x0s):
        train = KernelMixture(x0, model.s, model.bandwidth)
        train_terms = mixture_terms(train, dtype, gram_dtype=None, block_size=block_size)
        for c in range(n_conv):
            i = g * n_conv + c
            cross, cross_eta = cross_terms(_row(specs, i), train, dtype)
            terms = (
                train_terms.self_diagonal,
                ref_terms.self_diagonal,
                train_terms.pairs,
                ref_terms.pairs,
            )
            etas = (
                train_terms.self_eta,
                ref_terms.self_eta,
                train_terms.pairs_eta,
                ref_terms.pairs_eta,
            )
            log_terms.append(jnp.stack([*terms, cross, ref_cross[0][i]]))
            log_eta.append(jnp.stack([*etas, cross_eta, ref_cross[1][i]]))
    shape = (len(x0s), n_conv)
    rels = jax.vmap(combine_terms)(jnp.stack(log_terms), jnp.stack(log_eta))
    rels = jax.tree.map(lambda x: x.reshape(shape + x.shape[1:]), rels)
    return rels, jnp.repeat(kl[:, None], n_conv, 1), hellinger.reshape(shape)


def _reference_cells(x0s, xts, reference, model: _Model, cells: _Cells):
    # The reference arithmetic is float32 throughout, from the fit on; its inputs are the
    # same draws as the exact arithmetic's, so the two can be compared cell by cell.
    d, conventions = cells.d, cells.conventions
    f32 = jnp.float32
    p = _p(model, d)
    p = Gaussian(p.mean.astype(f32), p.cov.astype(f32))
    T, lam = model.T.astype(f32), model.lam.astype(f32)
    n_conv = len(conventions)
    qs, train_parts = [], []
    for x0, xt in zip(x0s, xts):
        x0, xt = x0.astype(f32), xt.astype(f32)
        denoiser = fit_affine(x0, xt)
        train = KernelMixture(x0, model.s, model.bandwidth)
        train_self = reference_self_term(train)
        for c in conventions:
            q = one_step_gaussian(denoiser, x0, T=T, lam=lam, convention=c)
            qs.append(q)
            train_parts.append((train_self, reference_cross_term(q, train)))
    qs = _stack(qs)
    train_self, train_cross = (jnp.stack(x) for x in zip(*train_parts))
    if reference is None:
        ref_self, ref_cross = jax.lax.map(lambda q: reference_gaussian_terms(q, p), qs)
    else:
        ref = KernelMixture(reference.astype(f32), model.s, model.bandwidth)
        ref_cross = jax.lax.map(lambda q: reference_cross_term(q, ref), qs)
        ref_self = jnp.broadcast_to(reference_self_term(ref), ref_cross.shape)
    rels = jax.vmap(
        lambda a, b, c, e: RelativeDistance.bounded(
            *reference_from_terms(a, b, c, e, d), "reference"
        )
    )(train_self, train_cross, ref_self, ref_cross)
    kl, hellinger = jax.lax.map(
        lambda q: (kl_divergence(q, p), reference_hellinger_squared(q, p)), qs
    )
    shape = (len(x0s), n_conv)
    return jax.tree.map(lambda x: x.reshape(shape + x.shape[1:]), (rels, kl, hellinger))


@eqx.filter_jit
def _sweep_chunk(key, repetitions, model, cells: _Cells, *, ns, reference_size, draws):
    d, dtype = cells.d, model.m.dtype

    def one(r):
        key_rep = jr.fold_in(key, r)
        inputs = [
            _cell_inputs(key_rep, n, d, model.m, model.s, model.T, model.lam, draws, dtype)
            for n in ns
        ]
        reference = None
        if reference_size is not None:
            reference = _draw(
                jr.fold_in(key_rep, _REFERENCE_TAG), reference_size, d, model.m, model.s, dtype
            )
        return cells([x for x, _ in inputs], [x for _, x in inputs], reference, model)

    # lax.map, not vmap: a vmapped LAPACK call (eigh, svd, cholesky) can deadlock
    # XLA:CPU's thread pool (see jaxflow._workarounds). The heavy steps are matmuls of a
    # thousand rows or more, which use every core one repetition at a time.
    return jax.lax.map(one, repetitions)


@eqx.filter_jit
def _arrays_cells(x0, xt, reference, model, cells: _Cells):
    if reference is None:
        return jax.lax.map(lambda ab: cells([ab[0]], [ab[1]], None, model), (x0, xt))
    return jax.lax.map(lambda abc: cells([abc[0]], [abc[1]], abc[2], model), (x0, xt, reference))


# ---------------------------------------------------------------------------------------
# Results.
# ---------------------------------------------------------------------------------------


class TransitionProbability(eqx.Module):
    r"""$P(\Delta > 0)$ per cell with its Wilson interval, from
    [`jaxflow.estimators.RelativeDistanceSweep.probability`][].

    **Fields** (each of shape `(len(ns), len(conventions))`):

    - `positives`: repetitions with $\Delta > 0$.
    - `trials`: repetitions.
    - `fraction`: `positives / trials`.
    - `lower`, `upper`: the Wilson interval.
    - `uncertain`: repetitions whose sign of $\Delta$ is not certain in the arithmetic used.
    - `confidence`: the intervals' confidence level.
    """

    positives: Int[Array, "grid conventions"]
    trials: Int[Array, "grid conventions"]
    fraction: Float[Array, "grid conventions"]
    lower: Float[Array, "grid conventions"]
    upper: Float[Array, "grid conventions"]
    uncertain: Int[Array, "grid conventions"]
    confidence: float = eqx.field(static=True)


class RelativeDistanceSweep(eqx.Module):
    r"""The relative distance $\Delta$ and the individual distances of [H]'s one-step model
    over repetitions, training-set sizes and covariance conventions, from
    [`jaxflow.estimators.relative_distance_sweep`][] or
    [`jaxflow.estimators.relative_distance_arrays`][].

    **Fields:**

    - `ns`: the training-set sizes (the grid).
    - `conventions`: the covariance conventions of
      [`jaxflow.denoisers.one_step_gaussian`][], in order.
    - `arithmetic`: `"exact"` or `"reference"`.
    - `reference_size`: $N_O$, or `None` when $\Delta$ compares against $p$ itself.
    - `relative`: a [`jaxflow.estimators.RelativeDistance`][] with arrays of shape
      `(repetitions, len(ns), len(conventions))`.
    - `kl`: $\mathrm{KL}(q \,\|\, p)$, same shape ($+\infty$ while $n \le d$).
    - `hellinger`: $H^2(q, p)$, same shape (the reference's own formula under
      `arithmetic="reference"`).
    - `recomputed`: how many repetitions were recomputed with a float64 Gram matrix
      because the float32 one left a sign of $\Delta$ uncertain.
    """

    ns: tuple[int, ...] = eqx.field(static=True)
    conventions: tuple[str, ...] = eqx.field(static=True)
    arithmetic: str = eqx.field(static=True)
    reference_size: int | None = eqx.field(static=True)
    relative: RelativeDistance
    kl: Float[Array, "repetitions grid conventions"]
    hellinger: Float[Array, "repetitions grid conventions"]
    recomputed: int = eqx.field(static=True, default=0)

    @property
    def positive(self) -> Bool[Array, "repetitions grid conventions"]:
        r"""$\Delta > 0$ per cell."""
        return self.relative.sign > 0

    def probability(self, confidence: float = 0.95) -> TransitionProbability:
        r"""$P(\Delta > 0)$ per $(n, \text{convention})$ with a Wilson interval: the
        repetitions are independent, so the count of positive $\Delta$ is binomial."""
        positives = jnp.sum(self.positive, axis=0)
        trials = jnp.full_like(positives, self.positive.shape[0])
        lower, upper = wilson_interval(positives, trials, confidence)
        return TransitionProbability(
            positives=positives,
            trials=trials,
            fraction=positives / trials,
            lower=lower,
            upper=upper,
            uncertain=jnp.sum(~self.relative.certain, axis=0),
            confidence=float(confidence),
        )

    def transition(self, key: PRNGKey, **kwargs) -> "TransitionPoint":
        """[`jaxflow.estimators.transition_point`][] for each convention; keyword
        arguments are passed on. Fields gain a trailing axis over conventions."""
        keys = jr.split(key, len(self.conventions))
        points = [
            transition_point(self.ns, self.positive[:, :, c], key=keys[c], **kwargs)
            for c in range(len(self.conventions))
        ]
        return jax.tree.map(lambda *xs: jnp.stack(xs, axis=-1), *points)


def _check_options(conventions, arithmetic, reference_size, draws, d):
    conventions = tuple(conventions)
    if not conventions or any(c not in CONVENTIONS for c in conventions):
        raise ValueError(
            f"`conventions` must be a non-empty tuple from {CONVENTIONS}, got {conventions}."
        )
    _check_arithmetic(arithmetic)
    if reference_size is not None and (not isinstance(reference_size, int) or reference_size < 2):
        raise ValueError(f"`reference_size` must be an int >= 2 or None, got {reference_size!r}.")
    if not isinstance(draws, int) or draws < 1:
        raise ValueError(f"`draws` must be a positive int, got {draws!r}.")
    if not isinstance(d, int) or d < 1:
        raise ValueError(f"`d` must be a positive int, got {d!r}.")
    return conventions


def _model(m, s, T, lam, bandwidth) -> _Model:
    dtype = jnp.result_type(float)
    values = [jnp.asarray(v, dtype) for v in (m, s, T, lam, bandwidth)]
    for name, v in zip(("m", "s", "T", "lam", "bandwidth"), values):
        if v.ndim:
            raise ValueError(f"`{name}` must be a scalar, got shape {v.shape}.")
    m, s, T, lam, bandwidth = values
    s = eqx.error_if(
        s, ~((s > 0) & (T > 0) & (lam > 0) & (bandwidth > 0)), "needs s, T, lam and bandwidth > 0."
    )
    return _Model(m, s, T, lam, bandwidth)


def relative_distance_sweep(
    key: PRNGKey,
    ns: Sequence[int],
    *,
    d: int,
    repetitions: int = 300,
    reference_size: int | None = 10_000,
    m: Real[ArrayLike, ""] = 10.0,
    s: Real[ArrayLike, ""] = 1.0,
    T: Real[ArrayLike, ""] = 2.0,
    lam: Real[ArrayLike, ""] = 1.0,
    draws: int = 1,
    conventions: Sequence[str] = CONVENTIONS,
    arithmetic: str = "exact",
    bandwidth: Real[ArrayLike, ""] = 1.0,
    gram_dtype=jnp.float32,
    chunk_size: int = 8,
    block_size: int = 1024,
    progress: bool = False,
) -> RelativeDistanceSweep:
    r"""The relative distance $\Delta$ of [H] (SCIENCE.md H3) over $R$ independent
    repetitions and a grid of training-set sizes, with the individual distances of $q$
    to $p$ on the same grid.

    Each repetition draws a reference sample $O \sim p^{N_O}$ and, for each $n$, a
    training set $S \sim p^n$ and its noise, fits the affine one-step denoiser
    ([`jaxflow.denoisers.fit_affine`][]) and forms the generated
    $q = \mathcal N(\mu_g, \Sigma_g)$ under each covariance convention
    ([`jaxflow.denoisers.one_step_gaussian`][]); then
    $\Delta = D(q, p_S^\varepsilon) - D(q, p_O^\varepsilon)$
    ([`jaxflow.estimators.relative_distance`][]), $\mathrm{KL}(q \,\|\, p)$ and $H^2(q, p)$.
    Here $p = \mathcal N(m\mathbf 1, s^2 I_d)$. Every repetition has new data, reference
    and noise; within a repetition the $n$ of the grid share the reference sample
    (*choice*: it costs $O(N_O^2 d)$ and does not depend on $n$; each $n$'s
    $P(\Delta > 0)$ is still a mean over independent repetitions) and the conventions
    share the fit, so they differ only by the covariance. The inputs of any cell are
    those of [`jaxflow.estimators.sweep_inputs`][].

    The repetitions of a chunk run as one jit-compiled computation, looped with
    `jax.lax.map` rather than `jax.vmap` (a batched LAPACK call can deadlock XLA:CPU's
    thread pool; the costly steps are large matmuls, which use every core one
    repetition at a time). Chunks have a fixed size, so the computation compiles once
    per configuration. The unrolled part of the program grows with the grid; the
    steps that see $q$ alone (eigendecompositions, KL, Hellinger) run once over the
    stacked $q$'s of the whole grid.

    Cost at [H]'s sweep ($d = 100$, $N_O = 10^4$, $R = 300$, four $n$, both
    conventions): about 45 s on 2 CPU cores, most of it the reference sample's
    $O(N_O^2 d)$ pairwise term, plus some 10 s of compilation (`benchmarks/linear.py`).

    **Main arguments:**

    - `key`: PRNG key; the same key gives the same numbers.
    - `ns`: the increasing training-set sizes, each $\ge 2$.
    - `d`: the dimension. [H] used 100.
    - `repetitions`: $R$; [H] used 300.
    - `reference_size`: $N_O$ ([H]: $10^4$), or `None` to compare against $p$ itself.

    **Other arguments:**

    - `m`, `s`: $p$'s mean (every coordinate) and standard deviation. Defaults 10, 1.
    - `T`, `lam`: the forward process's time and noise scale. Defaults 2, 1.
    - `draws`: noise draws per training point. Default 1.
    - `conventions`: covariance conventions to evaluate. Default both.
    - `arithmetic`: `"exact"` (default) or `"reference"` (the reference
      implementation's float32 arithmetic, see [`jaxflow.estimators.relative_distance`][]).
    - `bandwidth`: the kernel bandwidth factor $c$, $\varepsilon = c\,s\,N^{-1/d}$. Default 1.
    - `gram_dtype`: the dtype of the reference sample's Gram matmul, the one
      $O(N_O^2 d)$ step. Default float32, about twice as fast on CPU: its rounding is
      bounded at run time, and any repetition with a sign of $\Delta$ that the bound
      leaves uncertain is recomputed in float64 (counted in `recomputed`), so every
      reported sign is what float64 gives. `None`: the working dtype throughout.
    - `chunk_size`: repetitions per compiled call (a progress-bar step; any size compiles
      once). Default 8.
    - `block_size`: the pairwise terms are formed in blocks of this many points.
    - `progress`: show a progress bar over chunks.

    **Returns:** a [`jaxflow.estimators.RelativeDistanceSweep`][];
    `.probability()` gives $P(\Delta > 0)$ with Wilson intervals and `.transition(key)`
    the crossing point $n^*$.

    **Raises:** `ValueError` for a malformed grid or option; an `EquinoxRuntimeError`
    for non-positive `s`, `T`, `lam` or `bandwidth`.

    **Example:** [H]'s reference sweep.

    ```python
    import jax, jax.random as jr
    import jaxflow

    jax.config.update("jax_enable_x64", True)
    sweep = jaxflow.estimators.relative_distance_sweep(jr.key(0), (25, 50, 75, 100), d=100)
    prob = sweep.probability()           # P(Delta > 0), Wilson intervals: (n, convention)
    point = sweep.transition(jr.key(1))  # n* per convention, bootstrap interval
    ```
    """
    ns = _check_grid(ns)
    conventions = _check_options(conventions, arithmetic, reference_size, draws, d)
    if not isinstance(repetitions, int) or repetitions < 1:
        raise ValueError(f"`repetitions` must be a positive int, got {repetitions!r}.")
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"`chunk_size` must be a positive int, got {chunk_size!r}.")
    model = _model(m, s, T, lam, bandwidth)
    cells = lambda gram: _Cells(d, conventions, arithmetic, gram, block_size)
    grid = dict(ns=ns, reference_size=reference_size, draws=draws)
    fast = arithmetic == "exact" and reference_size is not None and gram_dtype is not None
    size = min(chunk_size, repetitions)

    def run(indices, gram):
        pieces = []
        starts = range(0, len(indices), size)
        for start in tqdm(
            starts,
            desc="relative distance",
            unit="chunk",
            disable=not progress or len(starts) == 1,
            leave=False,  # an inner bar when a preset loops over sweeps
        ):
            chunk = np.asarray(indices[start : start + size])
            keep = len(chunk)
            chunk = np.concatenate([chunk, np.full(size - keep, chunk[-1])])
            out = _sweep_chunk(key, jnp.asarray(chunk), model, cells(gram), **grid)
            pieces.append(jax.tree.map(lambda x: x[:keep], out))
        return jax.tree.map(lambda *xs: jnp.concatenate(xs), *pieces)

    relative, kl, hellinger = run(np.arange(repetitions), gram_dtype if fast else None)
    recomputed = 0
    if fast:
        # Recompute, with a float64 Gram matrix, every repetition that has a sign the
        # float32 bound leaves uncertain; the rest are certain already.
        redo = np.flatnonzero(~np.all(np.asarray(relative.certain), axis=(1, 2)))
        if redo.size:
            again = run(redo, None)
            relative, kl, hellinger = jax.tree.map(
                lambda old, new: old.at[redo].set(new), (relative, kl, hellinger), again
            )
            recomputed = int(redo.size)
    return RelativeDistanceSweep(
        ns=ns,
        conventions=conventions,
        arithmetic=arithmetic,
        reference_size=reference_size,
        relative=relative,
        kl=kl,
        hellinger=hellinger,
        recomputed=recomputed,
    )


def relative_distance_arrays(
    x0: Float[ArrayLike, "repetitions n d"],
    xt: Float[ArrayLike, "repetitions n draws d"],
    reference: Float[ArrayLike, "repetitions N d"] | None,
    *,
    m: Real[ArrayLike, ""] = 10.0,
    s: Real[ArrayLike, ""] = 1.0,
    T: Real[ArrayLike, ""] = 2.0,
    lam: Real[ArrayLike, ""] = 1.0,
    conventions: Sequence[str] = CONVENTIONS,
    arithmetic: str = "exact",
    bandwidth: Real[ArrayLike, ""] = 1.0,
    gram_dtype=None,
    block_size: int = 1024,
) -> RelativeDistanceSweep:
    r"""[`jaxflow.estimators.relative_distance_sweep`][] on given arrays, for one $n$: the
    training sets, their noisy copies and the reference samples of $R$ repetitions
    (e.g. saved ones, or those of [`jaxflow.estimators.sweep_inputs`][]), so that any
    result can be recomputed from its inputs.

    **Arguments:** `x0` of shape `(R, n, d)`, `xt` of shape `(R, n, draws, d)`,
    `reference` of shape `(R, N_O, d)` or `None` (compare against $p$); the rest as in
    [`jaxflow.estimators.relative_distance_sweep`][] (`gram_dtype` defaults to the
    working dtype here, and nothing is recomputed).

    **Returns:** a [`jaxflow.estimators.RelativeDistanceSweep`][] with `ns = (n,)`.
    """
    x0, xt = jnp.asarray(x0), jnp.asarray(xt)
    if x0.ndim != 3 or not jnp.issubdtype(x0.dtype, jnp.floating):
        raise ValueError(
            f"`x0` must be a floating array of shape (R, n, d), got {x0.dtype} {x0.shape}."
        )
    r, n, d = x0.shape
    if xt.ndim != 4 or xt.shape[:2] != (r, n) or xt.shape[3] != d:
        raise ValueError(f"`xt` must have shape ({r}, {n}, draws, {d}), got {xt.shape}.")
    if reference is not None:
        reference = jnp.asarray(reference)
        if reference.ndim != 3 or reference.shape[0] != r or reference.shape[2] != d:
            raise ValueError(f"`reference` must have shape ({r}, N_O, {d}), got {reference.shape}.")
    conventions = _check_options(
        conventions, arithmetic, None if reference is None else reference.shape[1], xt.shape[2], d
    )
    model = _model(m, s, T, lam, bandwidth)
    cells = _Cells(d, conventions, arithmetic, gram_dtype, block_size)
    relative, kl, hellinger = _arrays_cells(x0, xt, reference, model, cells)
    return RelativeDistanceSweep(
        ns=(n,),
        conventions=conventions,
        arithmetic=arithmetic,
        reference_size=None if reference is None else reference.shape[1],
        relative=relative,
        kl=kl,
        hellinger=hellinger,
    )


# ---------------------------------------------------------------------------------------
# The transition point.
# ---------------------------------------------------------------------------------------


class TransitionPoint(eqx.Module):
    r"""The training-set size $n^*$ at which $P(\Delta > 0)$ crosses a level, with a
    bootstrap interval, from [`jaxflow.estimators.transition_point`][].

    **Fields:**

    - `n_star`: $n^*$, interpolated linearly in $\log n$ between the grid points that
      bracket the crossing; NaN when the estimated curve does not cross on the grid.
    - `lower`, `upper`: the percentile bootstrap interval of $n^*$ over resamples that
      cross (NaN if none does).
    - `crossing_fraction`: the fraction of bootstrap resamples that cross on the grid;
      well below 1 means the interval is conditional on a crossing and should be read
      with care.
    - `level`, `confidence`, `resamples`: as requested.
    """

    n_star: Float[Array, "*curves"]
    lower: Float[Array, "*curves"]
    upper: Float[Array, "*curves"]
    crossing_fraction: Float[Array, "*curves"]
    level: float = eqx.field(static=True)
    confidence: float = eqx.field(static=True)
    resamples: int = eqx.field(static=True)


def crossing(
    ns: Float[Array, " grid"], fraction: Float[Array, " grid"], level: float, which: str
) -> Float[Array, ""]:
    r"""Where a curve sampled at `ns` first (`which="first"`) or last (`"last"`) crosses
    `level` upwards, interpolated linearly in $\log n$; NaN without a crossing."""
    up = (fraction[:-1] < level) & (fraction[1:] >= level)
    index = jnp.arange(up.shape[0])
    pick = jnp.where(up, index, -1 if which == "last" else up.shape[0])
    g = jnp.max(pick) if which == "last" else jnp.min(pick)
    g_safe = jnp.clip(g, 0, up.shape[0] - 1)
    lo, hi = fraction[g_safe], fraction[g_safe + 1]
    t = (level - lo) / jnp.where(hi > lo, hi - lo, 1.0)
    log_n = jnp.log(ns[g_safe]) + t * (jnp.log(ns[g_safe + 1]) - jnp.log(ns[g_safe]))
    return jnp.where(jnp.any(up), jnp.exp(log_n), jnp.nan)


@eqx.filter_jit
def _bootstrap(key, ns, positive, level, which, resamples, confidence):
    repetitions = positive.shape[0]
    values = positive.astype(ns.dtype)
    point = crossing(ns, jnp.mean(values, axis=0), level, which)

    def one(k):
        index = jr.randint(k, (repetitions,), 0, repetitions)
        return crossing(ns, jnp.mean(values[index], axis=0), level, which)

    draws = jax.lax.map(one, jr.split(key, resamples), batch_size=256)
    crossed = ~jnp.isnan(draws)
    alpha = 0.5 * (1.0 - confidence)
    lower, upper = jnp.nanquantile(draws, jnp.asarray([alpha, 1.0 - alpha], ns.dtype))
    return point, lower, upper, jnp.mean(crossed.astype(ns.dtype))


def transition_point(
    ns: Sequence[int] | ArrayLike,
    positive: ArrayLike,
    *,
    key: PRNGKey,
    level: float = 0.5,
    confidence: float = 0.95,
    resamples: int = 2000,
    which: Literal["first", "last"] = "last",
) -> TransitionPoint:
    r"""The transition $n^*$ where $P(\Delta > 0)$ crosses `level` (SCIENCE.md H3), with a
    percentile bootstrap interval.

    $P$ is estimated at each grid point as the fraction of positive repetitions, and
    $n^*$ is interpolated linearly in $\log n$ between the two grid points that bracket
    the upward crossing. `which="last"` (default) takes the last upward crossing, the
    size beyond which the model stays in the generalization regime on the grid;
    `"first"` the first one. $P$ need not be monotone: at $n = d$ the training set's
    kernel sum and the reference's decide $\Delta$, and $P$ can dip there.

    The bootstrap resamples repetitions with replacement, jointly over the grid (the
    cells of a repetition share its reference sample in
    [`jaxflow.estimators.relative_distance_sweep`][], and a joint resample is valid
    whether or not the cells are independent), and recomputes $n^*$.

    **Arguments:**

    - `ns`: the grid, increasing, shape `(grid,)`.
    - `positive`: $\Delta > 0$ per repetition and grid point, shape `(repetitions, grid)`.
    - `key`: PRNG key for the bootstrap.
    - `level`: the crossing level. Default 1/2.
    - `confidence`: the interval's level. Default 0.95.
    - `resamples`: bootstrap resamples. Default 2000.
    - `which`: `"last"` (default) or `"first"` upward crossing.

    **Returns:** a [`jaxflow.estimators.TransitionPoint`][].
    """
    dtype = jnp.result_type(float)
    ns = jnp.asarray(ns, dtype)
    positive = jnp.asarray(positive)
    if ns.ndim != 1 or ns.shape[0] < 2:
        raise ValueError(f"`ns` must be a grid of at least 2 sizes, got shape {ns.shape}.")
    if positive.ndim != 2 or positive.shape[1] != ns.shape[0]:
        raise ValueError(
            f"`positive` must have shape (repetitions, {ns.shape[0]}), got {positive.shape}."
        )
    if positive.dtype != jnp.bool_:
        raise TypeError(f"`positive` must be boolean, got dtype {positive.dtype}.")
    if which not in ("first", "last"):
        raise ValueError(f"`which` must be 'first' or 'last', got {which!r}.")
    if not 0.0 < level < 1.0 or not 0.0 < confidence < 1.0:
        raise ValueError(
            f"`level` and `confidence` must lie in (0, 1), got {level} and {confidence}."
        )
    if not isinstance(resamples, int) or resamples < 1:
        raise ValueError(f"`resamples` must be a positive int, got {resamples!r}.")
    ns = eqx.error_if(
        ns, jnp.any(jnp.diff(ns) <= 0) | jnp.any(ns <= 0), "`ns` must be positive and increasing."
    )
    point, lower, upper, fraction = _bootstrap(
        key, ns, positive, level, which, resamples, confidence
    )
    return TransitionPoint(
        n_star=point,
        lower=lower,
        upper=upper,
        crossing_fraction=fraction,
        level=float(level),
        confidence=float(confidence),
        resamples=resamples,
    )

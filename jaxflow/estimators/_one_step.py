import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float

from .._checks import (
    check_choice,
    check_gaussian,
    check_gram_dtype,
    check_int,
    check_points,
    check_positive,
    mask_weights,
)
from .._workarounds import _on_cpu, map_lapack
from ..data import Gaussian
from ._gaussian import check_isotropic, spectral_divergences, spectrum
from ._kernel import centred, KernelMixture, log_cross_shared, log_gaussian_cross, PairSums
from ._reference import (
    reference_cross_term,
    reference_from_terms,
    reference_gaussian_terms,
    reference_hellinger_squared,
    reference_self_term,
    reference_squares,
)
from ._relative import (
    ARITHMETICS,
    combine_terms,
    cross_terms,
    gaussian_terms,
    mixture_terms,
    RelativeDistance,
)


def _row(tree, i):
    return jax.tree.map(lambda x: x[i], tree)


def one_step_distances(
    qs: Gaussian,
    x0s: Sequence[Float[Array, "_n d"]] | Sequence[Float[Array, "_g _n d"]],
    reference: Float[ArrayLike, "N d"] | None,
    p: Gaussian,
    *,
    s: Float[ArrayLike, ""],
    bandwidth: Float[ArrayLike, ""] = 1.0,
    arithmetic: str = "exact",
    gram_dtype=None,
    block_size: int = 1024,
    masks: Sequence[Bool[ArrayLike, "_g _n"]] | None = None,
    reference_pairs: PairSums | None = None,
) -> tuple[RelativeDistance, Float[Array, "grid conventions"], Float[Array, "grid conventions"]]:
    r"""The relative distance $\Delta$ and the individual distances
    $\mathrm{KL}(q \,\|\, p)$ and $H^2(q, p)$ of many generated Gaussians at once, sharing
    every term that does not depend on $q$ ([H], Section 4;
    [conventions](../docs/conventions.md#relative-distance)).

    Row $g$ of `qs` holds the Gaussians generated from the training set `x0s[g]` under
    each covariance convention of [`jaxflow.flows.one_step_gaussian`][] (the columns).
    For each $q$,
    $\Delta = D(q, p_S^\varepsilon) - D(q, r)$ with $S$ = `x0s[g]` and $r$ the kernel
    mixture of `reference` (or $p$ itself when `reference` is `None`), as
    [`jaxflow.estimators.relative_distance`][] computes it one $q$ at a time.

    What is shared: the reference sample's $O(N_O^2 d)$ self-overlap (once for the whole
    grid, or given as `reference_pairs`, computed once for both arithmetics), each
    training set's self-overlap (once per row), the rotation of the reference sample into
    the eigenbasis of $q$ (one matmul per row, truncated to the rank $\min(n - 1, d)$ of
    $q$), and the eigendecomposition of each $q$, from which $\mathrm{KL}(q \,\|\, p)$
    and $H^2(q, p)$ follow for an isotropic $p$ in $O(d^2)$ (no factorisation of $p$).
    Everything that sees $q$ alone (eigendecompositions, and under the reference
    arithmetic its Hellinger distance) runs over the stacked $q$'s with
    `jaxflow._workarounds.map_lapack`: `jax.vmap`, except on XLA:CPU, where a batched
    LAPACK call can deadlock and it loops with `jax.lax.map` instead.

    With `masks`, the training sets come in groups padded to one shape each, and the rows
    of a group are computed by one loop body (`jax.lax.map`), so the program's size grows
    with the number of groups, not of rows. The reference sample's rotation for a $q$ of
    a group then takes the smallest of the ranks $r_0 = \min(n_{\max} - 1, d)$,
    $\lceil r_0 / 2 \rceil$, $\lceil r_0 / 4 \rceil$, ... (down to 8) that holds its
    $n - 1$, $n_{\max}$ the group's padded size (the eigenvalues beyond $n - 1$ are zero
    to rounding), by a branch per row on XLA:CPU, where the rows run one at a time, and
    $r_0$ elsewhere, where they may be batched and a branch would compute every rank.

    **Arguments:**

    - `qs`: the generated Gaussians, a [`jaxflow.data.Gaussian`][] with mean of shape
      `(grid, conventions, d)`; the columns of a row must share mean and spectrum.
    - `x0s`: the training sets, one per row, shapes `(n_g, d)` (sizes may differ), or
      with `masks` the groups of padded training sets, arrays of shapes `(rows_k, n_k, d)`
      (in the order of the rows of `qs`).
    - `reference`: the reference sample $O$, shape `(N_O, d)`, or `None` to compare
      against $p$ itself.
    - `p`: the sampling distribution, an isotropic [`jaxflow.data.Gaussian`][].
    - `s`: its standard deviation, which sets the kernels' bandwidth.
    - `bandwidth`: the bandwidth factor $c$, $\varepsilon = c\, s\, N^{-1/d}$. Default 1.
    - `arithmetic`: `"exact"` (default) or `"reference"` ([H]'s reference
      implementation's float32 arithmetic; pass `qs` computed in float32).
    - `gram_dtype`: the dtype of the reference sample's Gram matmul; `None` (default) for
      the working dtype. A float32 Gram matrix's rounding is bounded and reported in
      each $\Delta$'s `certain`.
    - `block_size`: the pairwise terms are formed in blocks of this many points.
    - `masks`: optional booleans, one array of shape `(rows_k, n_k)` per group of `x0s`:
      a training set is the points of its padded array where its mask is `True`.
    - `reference_pairs`: the reference sample's pair sums, from
      [`jaxflow.estimators.pair_sums`][] of `KernelMixture(reference, s, bandwidth)` with
      this `block_size` (and `reference_blocks=True` for the reference arithmetic), when
      computed once for several calls; `gram_dtype` is then theirs. Default: computed
      here, from a float32 Gram matrix under the reference arithmetic.

    **Returns:** `(relative, kl, hellinger)`: a [`jaxflow.estimators.RelativeDistance`][]
    and two arrays, each of shape `(grid, conventions)`.
    """
    check_choice(arithmetic, ARITHMETICS, "arithmetic")
    check_gaussian(qs, "qs")
    check_gaussian(p, "p")
    if qs.mean.ndim != 3:
        raise ValueError(
            f"`qs` must hold means of shape (grid, conventions, d), got {qs.mean.shape}."
        )
    check_gram_dtype(gram_dtype)
    check_int(block_size, "block_size", minimum=1)
    check_positive(s, "s")
    check_positive(bandwidth, "bandwidth")
    d = p.mean.shape[-1]
    check_isotropic(p, "p")
    if qs.mean.shape[-1] != d:
        raise ValueError(f"`qs` has dimension {qs.mean.shape[-1]} but `p` has dimension {d}.")
    groups = None
    if masks is not None:
        groups = _check_groups(x0s, masks)
        x0s = [x0 for group, _ in groups for x0 in group]
    for g, x0 in enumerate(x0s):
        check_points(x0, f"x0s[{g}]")
        if x0.shape[1] != d:
            raise ValueError(f"`x0s[{g}]` has dimension {x0.shape[1]} but `p` has dimension {d}.")
    if reference is not None:
        reference = check_points(reference, "reference")
        if reference.shape[1] != d:
            raise ValueError(
                f"`reference` has dimension {reference.shape[1]} but `p` has dimension {d}."
            )
    if reference_pairs is not None:
        if reference is None or not isinstance(reference_pairs, PairSums):
            raise ValueError(
                "`reference_pairs` must be the `PairSums` of the reference sample, which "
                "`reference` must then hold; pass `reference_pairs=None` otherwise."
            )
        if arithmetic == "reference" and reference_pairs.squares is None:
            raise ValueError(
                "`reference_pairs` lacks the reference arithmetic's squares; compute it with "
                "`pair_sums(..., reference_blocks=True)`."
            )
    grid, n_conv = qs.mean.shape[:2]
    if len(x0s) != grid:
        raise ValueError(
            f"`x0s` must hold one training set per row of `qs` ({grid}), got {len(x0s)}."
        )
    rows = jax.tree.map(lambda x: x.reshape((grid, n_conv) + x.shape[2:]), qs)
    if arithmetic == "exact":
        return _exact(
            rows, x0s, groups, reference, p, s, bandwidth, gram_dtype, block_size, reference_pairs
        )
    return _reference(rows, x0s, groups, reference, p, s, bandwidth, block_size, reference_pairs)


def _check_groups(x0s, masks) -> list[tuple[Array, Array]]:
    if len(x0s) != len(masks):
        raise ValueError(
            f"`masks` must hold one mask array per group of `x0s` ({len(x0s)}), got {len(masks)}."
        )
    groups = []
    for k, (group, mask) in enumerate(zip(x0s, masks)):
        group, mask = jnp.asarray(group), jnp.asarray(mask)
        if group.ndim != 3 or mask.shape != group.shape[:2] or mask.dtype != jnp.bool_:
            raise ValueError(
                f"`masks[{k}]` must be booleans of shape (rows, n) for `x0s[{k}]` of shape "
                f"(rows, n, d), got {mask.dtype} {mask.shape} for {group.shape}."
            )
        for g in range(group.shape[0]):
            mask_weights(
                mask[g],
                group.shape[1],
                group.dtype,
                min_rows=2,
                name=f"masks[{k}]",
                rows_of=f"x0s[{k}][{g}]",
            )
        groups.append((group, mask))
    return groups


def _over_rows(fn, rows, x0s, groups):
    """`fn(row, x0, mask)` for every row of the grid, stacked: one loop body
    (`jax.lax.map`) per group of padded training sets, else one trace per row (their
    shapes differ)."""
    if groups is None:
        outs = [fn(_row(rows, g), x0, None) for g, x0 in enumerate(x0s)]
        return jax.tree.map(lambda *xs: jnp.stack(xs), *outs)
    outs, start = [], 0
    for group, mask in groups:
        part = _row(rows, slice(start, start + group.shape[0]))
        outs.append(jax.lax.map(lambda args: fn(*args), (part, group, mask)))
        start += group.shape[0]
    return jax.tree.map(lambda *xs: jnp.concatenate(xs), *outs)


def _halvings(rank: int, smallest: int = 8) -> tuple[int, ...]:
    """`rank`, then its halves rounded up while they stay above `smallest`."""
    ranks = [rank]
    while ranks[-1] // 2 >= smallest:
        ranks.append(-(-ranks[-1] // 2))
    return tuple(ranks)


def _flat(tree):
    return jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), tree)


def _unflat(tree, grid: int):
    return jax.tree.map(lambda x: x.reshape((grid, -1) + x.shape[1:]), tree)


def _exact(qs, x0s, groups, reference, p, s, bandwidth, gram_dtype, block_size, pairs):
    d = p.mean.shape[-1]
    dtype = p.mean.dtype
    grid, n_conv = qs.mean.shape[:2]
    flat = _flat(qs)
    flat_specs = map_lapack(spectrum, flat)
    specs = _unflat(flat_specs, grid)
    kl, hellinger = _unflat(jax.vmap(lambda spec: spectral_divergences(spec, p))(flat_specs), grid)
    # The conventions of one fit share the spectrum, hence KL: one value per row.
    kl = jnp.broadcast_to(kl[:, :1], (grid, n_conv))
    if reference is None:
        ref_terms = gaussian_terms(p, dtype)
        lse, eta = map_lapack(lambda q: log_gaussian_cross(q, p), flat)
        ref_cross = _unflat((math.log(2.0) + lse, eta), grid)
    else:
        ref = KernelMixture(reference, s, bandwidth)
        ref_terms = mixture_terms(
            ref, dtype, gram_dtype=gram_dtype, block_size=block_size, pairs=pairs
        )
        # Centred once, outside the loop over rows.
        sample = centred(reference)

        def rotate(row, x0, mask):
            # One matmul per row rotates the reference sample for every convention: q has
            # rank at most n - 1, so only its top min(n - 1, d) eigenvectors are needed.
            spectra = [_row(row, c) for c in range(n_conv)]

            def at_rank(rank):
                crosses = log_cross_shared(spectra, [rank] * n_conv, sample, [ref.eps2] * n_conv)
                return tuple(jnp.stack(x) for x in zip(*crosses))

            top = min(x0.shape[0] - 1, d)
            if mask is None or not _on_cpu(x0):
                return at_rank(top)
            # A padded set of n < rows points needs only rank n - 1: the smallest of a few
            # ranks, halving from the padded one, that holds it. Taken by a branch, which
            # computes one rank only where rows run one at a time (`map_lapack` on CPU);
            # batched by vmap, every branch would run.
            ranks = _halvings(top)
            rank = jnp.sum(mask, dtype=jnp.int32) - 1
            smaller = jnp.sum(jnp.asarray(ranks[1:], jnp.int32) >= rank)
            return jax.lax.switch(smaller, [lambda r=r: at_rank(r) for r in ranks])

        lse, eta = _over_rows(rotate, specs, x0s, groups)
        ref_cross = (math.log(2.0) + lse - ref.log_count, eta)

    def train_terms(row, x0, mask):
        train = KernelMixture(x0, s, bandwidth, mask=mask)
        terms = mixture_terms(train, dtype, gram_dtype=None, block_size=block_size)
        crosses = [cross_terms(_row(row, c), train, dtype) for c in range(n_conv)]
        cross, cross_eta = (jnp.stack(x) for x in zip(*crosses))
        shared = jnp.stack([terms.self_diagonal, ref_terms.self_diagonal, terms.pairs])
        shared_eta = jnp.stack([terms.self_eta, ref_terms.self_eta, terms.pairs_eta])
        return (
            jnp.broadcast_to(shared, (n_conv, 3)),
            jnp.broadcast_to(shared_eta, (n_conv, 3)),
            cross,
            cross_eta,
        )

    shared, shared_eta, cross, cross_eta = _over_rows(train_terms, specs, x0s, groups)
    log_terms = jnp.concatenate(
        [
            shared[..., :3],
            jnp.broadcast_to(ref_terms.pairs, (grid, n_conv))[..., None],
            cross[..., None],
            ref_cross[0][..., None],
        ],
        axis=-1,
    )
    log_eta = jnp.concatenate(
        [
            shared_eta,
            jnp.broadcast_to(ref_terms.pairs_eta, (grid, n_conv))[..., None],
            cross_eta[..., None],
            ref_cross[1][..., None],
        ],
        axis=-1,
    )
    rels = jax.vmap(jax.vmap(combine_terms))(log_terms, log_eta)
    return rels, kl, hellinger


def _reference(qs, x0s, groups, reference, p, s, bandwidth, block_size, pairs):
    # The reference arithmetic is float32 throughout.
    f32 = jnp.float32
    d = p.mean.shape[-1]
    grid, n_conv = qs.mean.shape[:2]
    p = Gaussian(p.mean.astype(f32), p.cov.astype(f32))
    flat = _flat(qs)

    def train_terms(row, x0, mask):
        train = KernelMixture(x0.astype(f32), s, bandwidth, mask=mask)
        self_term = reference_self_term(train)
        cross = jnp.stack([reference_cross_term(_row(row, c), train) for c in range(n_conv)])
        return jnp.broadcast_to(self_term, (n_conv,)), cross

    train_self, train_cross = _over_rows(train_terms, qs, x0s, groups)
    if reference is None:
        ref_self, ref_cross = _unflat(
            map_lapack(lambda q: reference_gaussian_terms(q, p), flat), grid
        )
    else:
        # The squares from the points as given (as `pair_sums` forms them for both
        # arithmetics), the cross terms from their float32 copies.
        ref = KernelMixture(reference, s, bandwidth)
        squares = reference_squares(ref, block_size=block_size) if pairs is None else pairs.squares
        ref_self = reference_self_term(ref, squares)
        ref = KernelMixture(jnp.asarray(reference).astype(f32), s, bandwidth)
        ref_cross = _unflat(map_lapack(lambda q: reference_cross_term(q, ref), flat), grid)
        ref_self = jnp.broadcast_to(ref_self, ref_cross.shape)
    rels = jax.vmap(
        jax.vmap(
            lambda a, b, c, e: RelativeDistance.bounded(
                *reference_from_terms(a, b, c, e, d), "reference"
            )
        )
    )(train_self, train_cross, ref_self, ref_cross)
    kl, hellinger = _unflat(
        map_lapack(
            lambda q: (spectral_divergences(spectrum(q), p)[0], reference_hellinger_squared(q, p)),
            flat,
        ),
        grid,
    )
    return rels, kl, hellinger

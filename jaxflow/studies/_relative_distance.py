import dataclasses
import functools
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Real
from tqdm.auto import tqdm

from .._checks import (
    check_choice,
    check_finite,
    check_finite_scalar,
    check_gram_dtype,
    check_int,
    check_key,
    check_positive_int,
    check_same_dtype,
    positive_scalars,
)
from .._custom_types import PRNGKey
from .._sharding import gather, padded, per_device, shard
from .._workarounds import map_lapack
from ..data import forward_jump, Gaussian
from ..estimators import (
    ARITHMETICS,
    KernelMixture,
    one_step_distances,
    pair_sums,
    RelativeDistance,
    transition_point,
    transition_probability,
    TransitionPoint,
    TransitionProbability,
)
from ..flows import COVARIANCE_CONVENTIONS, one_step_gaussian
from ..training import fit_affine


# ---------------------------------------------------------------------------------------
# Drawing the inputs of one cell (repetition, n): fixed by the key, the repetition and n.
# ---------------------------------------------------------------------------------------

# fold_in tags: the reference sample of a repetition uses 0, the cell of size n uses n.
_REFERENCE_TAG = 0


def _draw(key: PRNGKey, n: int, d: int, m, s, dtype) -> Float[Array, "n d"]:
    return m + s * jr.normal(key, (n, d), dtype)


def _cell_inputs(key_rep, n, rows: int, d: int, m, s, T, lam, draws: int, dtype):
    """The training set of size `n` (an int, or traced) and its noisy copies, drawn as
    `rows >= n` rows of which the first `n` are the cell's: with JAX's partitionable
    Threefry (the default) the leading rows of a draw do not depend on its shape, so
    padded draws agree bitwise with `sweep_inputs`'."""
    k_x, k_z = jr.split(jr.fold_in(key_rep, n))
    x0 = _draw(k_x, rows, d, m, s, dtype)
    return x0, forward_jump(x0, key=k_z, T=T, lam=lam, draws=draws)


def _check_grid(ns: Sequence[int]) -> tuple[int, ...]:
    if isinstance(ns, (int, np.integer)) or not isinstance(ns, (Sequence, np.ndarray, jax.Array)):
        raise TypeError(f"`ns` must be a sequence of training-set sizes, got {ns!r}.")
    ns = tuple(check_int(n, "ns", minimum=2) for n in np.asarray(ns).tolist())
    if not ns or list(ns) != sorted(set(ns)):
        raise ValueError(f"`ns` must be increasing training-set sizes, each >= 2, got {ns}.")
    return ns


def sweep_inputs(
    repetition: int,
    n: int,
    *,
    key: PRNGKey,
    d: int,
    m: Real[ArrayLike, ""] = 10.0,
    s: Real[ArrayLike, ""] = 1.0,
    T: Real[ArrayLike, ""] = 2.0,
    lam: Real[ArrayLike, ""] = 1.0,
    reference_size: int | None = 10_000,
    draws: int = 1,
) -> tuple[Float[Array, "n d"], Float[Array, "n draws d"], Float[Array, "N d"] | None]:
    r"""The inputs of one cell of [`jaxflow.studies.relative_distance_sweep`][]: the
    training set, its noisy copies and the reference sample, exactly as the sweep drew
    them, so that any cell can be recomputed (by
    [`jaxflow.studies.relative_distance_arrays`][] or another implementation).

    Repetition $r$ uses the key `jr.fold_in(key, r)`; its reference sample
    $O \sim p^{N_O}$ comes from `fold_in(·, 0)` and is shared by every $n$ of the
    repetition; the training set of size $n$ and its noise come from `fold_in(·, n)`,
    so a cell does not depend on the rest of the grid. Points are
    $m\mathbf 1 + s z$, $z \sim \mathcal N(0, I_d)$, in the default float dtype.

    **Returns:** `(x0, xt, reference)`, shapes `(n, d)`, `(n, draws, d)` and
    `(reference_size, d)` (`None` when `reference_size` is `None`).
    """
    repetition = check_int(repetition, "repetition", minimum=0)
    n = check_int(n, "n", minimum=2)
    d = check_positive_int(d, "d")
    draws = check_positive_int(draws, "draws")
    if reference_size is not None:
        reference_size = check_int(reference_size, "reference_size", minimum=2)
    check_key(key)
    model = _model(m, s, T, lam, 1.0)
    key_rep = jr.fold_in(key, repetition)
    return _drawn(key_rep, model, n=n, d=d, draws=draws, reference_size=reference_size)


@functools.partial(jax.jit, static_argnames=("n", "d", "draws", "reference_size"))
def _drawn(key_rep, model: "_Model", *, n, d, draws, reference_size):
    # Compiled, as the sweep draws them: run op by op, m + s z and the forward jump can
    # round differently in the last bit.
    dtype = model.m.dtype
    x0, xt = _cell_inputs(key_rep, n, n, d, model.m, model.s, model.T, model.lam, draws, dtype)
    if reference_size is None:
        return x0, xt, None
    reference = _draw(
        jr.fold_in(key_rep, _REFERENCE_TAG), reference_size, d, model.m, model.s, dtype
    )
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
    arithmetics: tuple[str, ...]
    gram_dtype: object
    block_size: int

    def __call__(self, groups, reference, model: _Model):
        """Per arithmetic, per (n, convention): the RelativeDistance, KL(q || p) and
        H^2(q, p), from the groups `(x0s, xts, masks)` of training sets (rows, n, d),
        padded where `masks` (rows, n) says, with their noisy copies, and the reference
        sample. One group with `masks=None`: unpadded sets."""
        pairs = self._reference_pairs(reference, model)
        return tuple(
            self._distances(arithmetic, groups, reference, model, pairs.get(arithmetic))
            for arithmetic in self.arithmetics
        )

    def _reference_pairs(self, reference, model: _Model) -> dict:
        """The reference sample's O(N_O^2 d) pair sums, once for every arithmetic that
        forms them from Gram matrices of one dtype: the reference arithmetic's own is
        float32, the exact one's `gram_dtype`."""
        if reference is None:
            return {}
        mix = KernelMixture(reference, model.s, model.bandwidth)
        grams = {"exact": self.gram_dtype or reference.dtype, "reference": jnp.float32}
        wanted = {a: jnp.dtype(grams[a]) for a in self.arithmetics}
        pairs = {}
        for gram in dict.fromkeys(wanted.values()):
            sums = pair_sums(
                mix,
                gram_dtype=gram,
                block_size=self.block_size,
                reference_blocks=wanted.get("reference") == gram,
            )
            pairs |= {a: sums for a, g in wanted.items() if g == gram}
        return pairs

    def _distances(self, arithmetic: str, groups, reference, model: _Model, pairs):
        p = _p(model, self.d)
        T, lam = model.T, model.lam
        if arithmetic == "reference":
            # The reference arithmetic is float32 throughout, from the fit on; its inputs
            # are the same draws as the exact arithmetic's, so the two can be compared
            # cell by cell.
            f32 = jnp.float32
            groups = [(x0s.astype(f32), xts.astype(f32), masks) for x0s, xts, masks in groups]
            T, lam = T.astype(f32), lam.astype(f32)

        def generate(args):
            x0, xt, mask = args
            denoiser = fit_affine(x0, xt, mask=mask)
            return _stack(
                [
                    one_step_gaussian(denoiser, x0, T=T, lam=lam, convention=c, mask=mask)
                    for c in self.conventions
                ]
            )

        # One training set at a time: one loop body per group.
        qs = _concatenate([jax.lax.map(generate, group) for group in groups])
        padded = groups[0][2] is not None
        return one_step_distances(
            qs,
            [x0s for x0s, _, _ in groups] if padded else list(groups[0][0]),
            reference,
            p,
            s=model.s,
            bandwidth=model.bandwidth,
            arithmetic=arithmetic,
            gram_dtype=self.gram_dtype,
            block_size=self.block_size,
            masks=[masks for _, _, masks in groups] if padded else None,
            reference_pairs=pairs,
        )


def _stack(rows):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *rows)


def _concatenate(parts):
    return jax.tree.map(lambda *xs: jnp.concatenate(xs), *parts)


def _padding_groups(ns: tuple[int, ...], reference_size: int | None):
    """The groups `(rows, sizes)` of the grid whose training sets share one padded shape
    of `rows` rows (one loop body each): the whole grid padded to its largest size,
    unless the padded sets' own $O(\text{rows}^2)$ pair terms would cost more than a
    sixteenth of the reference sample's $O(N_O^2)$ one; then sizes within a factor 2 of
    each other share one shape, so that padding at most doubles a set."""
    if 16 * len(ns) * max(ns) ** 2 <= (reference_size or 0) ** 2:
        return ((max(ns), ns),)
    groups, rest = [], sorted(ns)
    while rest:
        top = rest[-1]
        groups.append((top, tuple(n for n in rest if 2 * n > top)))
        rest = [n for n in rest if 2 * n <= top]
    return tuple(reversed(groups))


@eqx.filter_jit
def _sweep_chunk(key, repetitions, model, cells: _Cells, *, groups, reference_size, draws):
    """The cells of the repetitions `repetitions` (split across every device), for every
    size of the grid, in `groups` `(rows, sizes)` (`_padding_groups`). Every training set
    of a group is padded to `rows` rows with a mask and the group is a loop inside the
    program, so the program's shapes depend on the groups' `rows` and lengths alone."""
    d, dtype = cells.d, model.m.dtype

    def inputs(key_rep, rows, sizes):
        sizes = jnp.asarray(sizes)
        x0s, xts = jax.lax.map(
            lambda n: _cell_inputs(
                key_rep, n, rows, d, model.m, model.s, model.T, model.lam, draws, dtype
            ),
            sizes,
        )
        return x0s, xts, jnp.arange(rows)[None, :] < sizes[:, None]

    def one(r):
        key_rep = jr.fold_in(key, r)
        padded = [inputs(key_rep, rows, sizes) for rows, sizes in groups]
        reference = None
        if reference_size is not None:
            reference = _draw(
                jr.fold_in(key_rep, _REFERENCE_TAG), reference_size, d, model.m, model.s, dtype
            )
        return cells(padded, reference, model)

    # On XLA:CPU one repetition at a time (lax.map), for memory: each holds its reference
    # sample's pairwise blocks, and its heavy steps are matmuls of a thousand rows or
    # more, which use every core one repetition at a time. Elsewhere vmapped.
    return per_device(lambda reps: map_lapack(one, reps))(repetitions)


@eqx.filter_jit
def _arrays_cells(x0, xt, reference, model, cells: _Cells):
    # One repetition at a time, as in `_sweep_chunk`.
    if reference is None:
        return jax.lax.map(
            lambda ab: cells([(ab[0][None], ab[1][None], None)], None, model), (x0, xt)
        )
    return jax.lax.map(
        lambda abc: cells([(abc[0][None], abc[1][None], None)], abc[2], model), (x0, xt, reference)
    )


# ---------------------------------------------------------------------------------------
# Results.
# ---------------------------------------------------------------------------------------


class RelativeDistanceSweep(eqx.Module):
    r"""The relative distance $\Delta$ and the individual distances of [H]'s one-step model
    over repetitions, training-set sizes and covariance conventions, from
    [`jaxflow.studies.relative_distance_sweep`][] or
    [`jaxflow.studies.relative_distance_arrays`][].

    **Fields:**

    - `ns`: the training-set sizes (the grid).
    - `conventions`: the covariance conventions of
      [`jaxflow.flows.one_step_gaussian`][], in order.
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
        r"""$P(\Delta > 0)$ per $(n, \text{convention})$ with a Wilson interval
        ([`jaxflow.estimators.transition_probability`][])."""
        return transition_probability(
            self.positive, certain=self.relative.certain, confidence=confidence
        )

    def transition(self, *, key: PRNGKey, **kwargs) -> TransitionPoint:
        """[`jaxflow.estimators.transition_point`][] for each convention; keyword
        arguments are passed on. Fields gain a trailing axis over conventions."""
        keys = jr.split(key, len(self.conventions))
        points = [
            transition_point(self.ns, self.positive[:, :, c], key=keys[c], **kwargs)
            for c in range(len(self.conventions))
        ]
        return jax.tree.map(lambda *xs: jnp.stack(xs, axis=-1), *points)


def _check_arithmetics(arithmetic) -> tuple[str, ...]:
    """`arithmetic` as a tuple: one name, or several distinct ones."""
    if isinstance(arithmetic, str):
        return (check_choice(arithmetic, ARITHMETICS, "arithmetic"),)
    arithmetics = tuple(arithmetic) if isinstance(arithmetic, (tuple, list)) else ()
    if (
        not arithmetics
        or len(set(arithmetics)) != len(arithmetics)
        or any(a not in ARITHMETICS for a in arithmetics)
    ):
        raise ValueError(
            f"`arithmetic` must be one of {ARITHMETICS} or a tuple of distinct ones, "
            f"got {arithmetic!r}."
        )
    return arithmetics


def _check_options(conventions, reference_size, draws, d):
    conventions = tuple(conventions)
    if not conventions or any(c not in COVARIANCE_CONVENTIONS for c in conventions):
        raise ValueError(
            f"`conventions` must be a non-empty tuple from {COVARIANCE_CONVENTIONS}, "
            f"got {conventions}."
        )
    if reference_size is not None:
        check_int(reference_size, "reference_size", minimum=2)
    check_positive_int(draws, "draws")
    check_positive_int(d, "d")
    return conventions


def _model(m, s, T, lam, bandwidth) -> _Model:
    dtype = jnp.result_type(float)
    m = check_finite_scalar(m, "m", dtype)
    s, T, lam, bandwidth = positive_scalars(
        dtype, "relative_distance_sweep", s=s, T=T, lam=lam, bandwidth=bandwidth
    )
    return _Model(m, s, T, lam, bandwidth)


def relative_distance_sweep(
    ns: Sequence[int],
    *,
    key: PRNGKey,
    d: int,
    repetitions: int = 300,
    reference_size: int | None = 10_000,
    m: Real[ArrayLike, ""] = 10.0,
    s: Real[ArrayLike, ""] = 1.0,
    T: Real[ArrayLike, ""] = 2.0,
    lam: Real[ArrayLike, ""] = 1.0,
    draws: int = 1,
    conventions: Sequence[str] = COVARIANCE_CONVENTIONS,
    arithmetic: str | Sequence[str] = "exact",
    bandwidth: Real[ArrayLike, ""] = 1.0,
    gram_dtype=jnp.float32,
    chunk_size: int = 8,
    block_size: int = 1024,
    progress: bool = False,
) -> RelativeDistanceSweep | dict[str, RelativeDistanceSweep]:
    r"""The relative distance $\Delta$ of [H] (Section 4; docs/models.md#relative-distance) over
    $R$ independent repetitions and a grid of training-set sizes, with the individual distances
    of $q$ to $p$ on the same grid.

    Each repetition draws a reference sample $O \sim p^{N_O}$ and, for each $n$, a
    training set $S \sim p^n$ and its noise, fits the affine one-step denoiser
    ([`jaxflow.training.fit_affine`][]) and forms the generated
    $q = \mathcal N(\mu_g, \Sigma_g)$ under each covariance convention
    ([`jaxflow.flows.one_step_gaussian`][]); then
    $\Delta = D(q, p_S^\varepsilon) - D(q, p_O^\varepsilon)$
    ([`jaxflow.estimators.relative_distance`][]), $\mathrm{KL}(q \,\|\, p)$ and $H^2(q, p)$.
    Here $p = \mathcal N(m\mathbf 1, s^2 I_d)$. Every repetition has new data, reference
    and noise; within a repetition the $n$ of the grid share the reference sample
    (*choice*: it costs $O(N_O^2 d)$ and does not depend on $n$; each $n$'s
    $P(\Delta > 0)$ is still a mean over independent repetitions) and the conventions
    share the fit, so they differ only by the covariance. The inputs of any cell are
    those of [`jaxflow.studies.sweep_inputs`][]; the distances of each repetition are
    [`jaxflow.estimators.one_step_distances`][].

    The repetitions of a chunk run as one jit-compiled computation, split across every
    device (`jaxflow._sharding`: every device of every process) and gathered back;
    on each device they loop with `jax.lax.map` on XLA:CPU (the costly steps are large
    matmuls, which use every core one repetition at a time, and a batch of repetitions
    would hold a batch of reference samples' pairwise blocks) and are vmapped elsewhere.
    Every training set is drawn padded to $\max n$ rows with a mask (its first $n$ rows
    are those of [`jaxflow.studies.sweep_inputs`][], bitwise) and the grid is a loop
    inside the program, so chunks compile once per configuration whatever the grid:
    the program's shapes depend on $\max n$, $d$, $N_O$ and `draws` alone. Where the
    padded sets' own pair terms would cost more than a sixteenth of the reference
    sample's (a grid from $d/4$ to $10 d$, say), sizes within a factor 2 of each other
    share a padded shape instead, one loop body per group. Results are the same on any
    number of devices and for any chunk size, and differ from those of unpadded sets by
    rounding alone.

    Cost at [H]'s sweep ($d = 100$, $N_O = 10^4$, $R = 300$, four $n$, both
    conventions), on 2 CPU cores: about 40 s in exact arithmetic, most of it the
    reference sample's $O(N_O^2 d)$ pairwise term, plus 4 to 7 s of compilation, the
    same for a grid of 4, 8 or 16 sizes; both arithmetics in one program about 43-48 s,
    against 71-76 s for two sweeps (`benchmarks/linear.py`).

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
      implementation's float32 arithmetic, see [`jaxflow.estimators.relative_distance`][]),
      or a tuple of both: then both run on the same draws in one program, and the
      reference sample's $O(N_O^2 d)$ pair sums are formed once for both
      ([`jaxflow.estimators.pair_sums`][]; with the default `gram_dtype`), which makes
      the pair nearly half the cost of two sweeps.
    - `bandwidth`: the kernel bandwidth factor $c$, $\varepsilon = c\,s\,N^{-1/d}$. Default 1.
    - `gram_dtype`: the dtype of the exact arithmetic's Gram matmul of the reference
      sample, the one $O(N_O^2 d)$ step (the reference arithmetic's is float32).
      Default float32, about twice as fast on CPU: its rounding is bounded at run time,
      and any repetition with a sign of $\Delta$ that the bound leaves uncertain is
      recomputed in float64 (counted in `recomputed`), so every reported sign is what
      float64 gives. `None`: the working dtype throughout.
    - `chunk_size`: repetitions per compiled call (a progress-bar step; any size compiles
      once), rounded up to a multiple of the device count. Default 8.
    - `block_size`: the pairwise terms are formed in blocks of this many points.
    - `progress`: show a progress bar over chunks.

    **Returns:** a [`jaxflow.studies.RelativeDistanceSweep`][] (for a tuple `arithmetic`,
    a dict of them by arithmetic); `.probability()` gives $P(\Delta > 0)$ with Wilson
    intervals and `.transition(key)` the crossing point $n^*$.

    **Raises:** `ValueError` for a malformed grid or option (a size or count that is not
    an int, a non-finite `m`, or `s`, `T`, `lam` or `bandwidth` not positive and
    finite); `TypeError` for a `key` that is not a PRNG key.

    **Example:** a small sweep (seconds; [H]'s own is `ns=(25, 50, 75, 100)`, `d=100`,
    `repetitions=300`, `reference_size=10_000`).

    ```python
    import jax, jax.random as jr
    import jaxflow

    jax.config.update("jax_enable_x64", True)
    sweep = jaxflow.studies.relative_distance_sweep(
        (10, 40), key=jr.key(3), d=20, repetitions=40, reference_size=1_000
    )
    prob = sweep.probability()               # P(Delta > 0), Wilson intervals: (n, convention)
    point = sweep.transition(key=jr.key(4))  # n* per convention, bootstrap interval
    ```
    """
    ns = _check_grid(ns)
    check_key(key)
    conventions = _check_options(conventions, reference_size, draws, d)
    arithmetics = _check_arithmetics(arithmetic)
    repetitions = check_positive_int(repetitions, "repetitions")
    chunk_size = check_positive_int(chunk_size, "chunk_size")
    block_size = check_positive_int(block_size, "block_size")
    check_gram_dtype(gram_dtype)
    model = _model(m, s, T, lam, bandwidth)
    grid = dict(
        groups=_padding_groups(ns, reference_size), reference_size=reference_size, draws=draws
    )
    fast = "exact" in arithmetics and reference_size is not None and gram_dtype is not None
    # A multiple of the device count, so that every device takes as many repetitions.
    size = padded(min(chunk_size, repetitions))

    def run(indices, arithmetics, gram):
        cells = _Cells(d, conventions, arithmetics, gram, block_size)
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
            out = gather(_sweep_chunk(key, shard(jnp.asarray(chunk)), model, cells, **grid))
            pieces.append(jax.tree.map(lambda x: x[:keep], out))
        return dict(zip(arithmetics, jax.tree.map(lambda *xs: jnp.concatenate(xs), *pieces)))

    results = run(np.arange(repetitions), arithmetics, gram_dtype if fast else None)
    recomputed = 0
    if fast:
        # Recompute, with a float64 Gram matrix, every repetition that has a sign the
        # float32 bound leaves uncertain; the rest are certain already.
        redo = np.flatnonzero(~np.all(np.asarray(results["exact"][0].certain), axis=(1, 2)))
        if redo.size:
            again = run(redo, ("exact",), None)["exact"]
            results["exact"] = jax.tree.map(
                lambda old, new: old.at[redo].set(new), results["exact"], again
            )
            recomputed = int(redo.size)
    sweeps = {
        name: RelativeDistanceSweep(
            ns=ns,
            conventions=conventions,
            arithmetic=name,
            reference_size=reference_size,
            relative=relative,
            kl=kl,
            hellinger=hellinger,
            recomputed=recomputed if name == "exact" else 0,
        )
        for name, (relative, kl, hellinger) in results.items()
    }
    return sweeps[arithmetic] if isinstance(arithmetic, str) else sweeps


def relative_distance_arrays(
    x0: Float[ArrayLike, "repetitions n d"],
    xt: Float[ArrayLike, "repetitions n draws d"],
    reference: Float[ArrayLike, "repetitions N d"] | None,
    *,
    m: Real[ArrayLike, ""] = 10.0,
    s: Real[ArrayLike, ""] = 1.0,
    T: Real[ArrayLike, ""] = 2.0,
    lam: Real[ArrayLike, ""] = 1.0,
    conventions: Sequence[str] = COVARIANCE_CONVENTIONS,
    arithmetic: str = "exact",
    bandwidth: Real[ArrayLike, ""] = 1.0,
    gram_dtype=None,
    block_size: int = 1024,
) -> RelativeDistanceSweep:
    r"""[`jaxflow.studies.relative_distance_sweep`][] on given arrays, for one $n$: the
    training sets, their noisy copies and the reference samples of $R$ repetitions
    (e.g. saved ones, or those of [`jaxflow.studies.sweep_inputs`][]), so that any
    result can be recomputed from its inputs.

    **Arguments:** `x0` of shape `(R, n, d)`, `xt` of shape `(R, n, draws, d)`,
    `reference` of shape `(R, N_O, d)` or `None` (compare against $p$); the rest as in
    [`jaxflow.studies.relative_distance_sweep`][] (`gram_dtype` defaults to the
    working dtype here, and nothing is recomputed).

    **Returns:** a [`jaxflow.studies.RelativeDistanceSweep`][] with `ns = (n,)`.
    """
    x0, xt = jnp.asarray(x0), jnp.asarray(xt)
    if x0.ndim != 3 or not jnp.issubdtype(x0.dtype, jnp.floating) or 0 in x0.shape:
        raise ValueError(
            f"`x0` must be a floating array of shape (R, n, d), none empty, got {x0.dtype} "
            f"{x0.shape}."
        )
    r, n, d = x0.shape
    if xt.ndim != 4 or xt.shape[:2] != (r, n) or xt.shape[3] != d:
        raise ValueError(f"`xt` must have shape ({r}, {n}, draws, {d}), got {xt.shape}.")
    check_same_dtype(x0, "x0", xt, "xt")
    check_finite(x0, "x0")
    check_finite(xt, "xt")
    if reference is not None:
        reference = jnp.asarray(reference)
        if reference.ndim != 3 or reference.shape[0] != r or reference.shape[2] != d:
            raise ValueError(f"`reference` must have shape ({r}, N_O, {d}), got {reference.shape}.")
        check_same_dtype(x0, "x0", reference, "reference")
        check_finite(reference, "reference")
    check_gram_dtype(gram_dtype)
    block_size = check_positive_int(block_size, "block_size")
    conventions = _check_options(
        conventions, None if reference is None else reference.shape[1], xt.shape[2], d
    )
    check_choice(arithmetic, ARITHMETICS, "arithmetic")
    model = _model(m, s, T, lam, bandwidth)
    cells = _Cells(d, conventions, (arithmetic,), gram_dtype, block_size)
    ((relative, kl, hellinger),) = _arrays_cells(x0, xt, reference, model, cells)
    return RelativeDistanceSweep(
        ns=(n,),
        conventions=conventions,
        arithmetic=arithmetic,
        reference_size=None if reference is None else reference.shape[1],
        relative=relative,
        kl=kl,
        hellinger=hellinger,
    )

"""What the presets of [H]'s memorization-to-generalization transition share: the forward
process, the reference sample and the estimator settings, one relative-distance sweep
per (dimension, arithmetic), and the rows, intervals and axes made from it."""

import dataclasses
import sys
import typing
from collections.abc import Mapping
from typing import ClassVar, Literal

import jax.numpy as jnp
import numpy as np
from matplotlib.ticker import FixedLocator, LogLocator, NullFormatter, ScalarFormatter

from ...estimators import RelativeDistance
from ...flows import COVARIANCE_CONVENTIONS
from ...studies import relative_distance_sweep, RelativeDistanceSweep
from .._params import at_least, param, positive, unit_open
from ._common import _AbstractSampling


CONVENTIONS = COVARIANCE_CONVENTIONS
# The dtype of the reference sample's Gram matmul, by its parameter's value.
_GRAM = {"float32": jnp.float32, "float64": None}
# The fields of a sweep's RelativeDistance that a cell stores.
_RELATIVE_FIELDS = ("sign", "log_abs", "log_terms", "signs", "log_error", "certain")
# Bytes a cell stores per (repetition, size, convention): the RelativeDistance (5 scalars
# and two rows of 6 terms), KL and Hellinger.
_CELL_BYTES = 8 * (5 + 12 + 2)
# The order of the six terms of an exact Delta (jaxflow.estimators.RelativeDistance):
# diagonals of S and O, pairs of S and O, the overlaps of q with S and with O.
_PAIRS_S, _PAIRS_O, _CROSS_S, _CROSS_O = 2, 3, 4, 5


@dataclasses.dataclass(frozen=True)
class _AbstractTransition(_AbstractSampling):
    """A study of [H]'s relative distance
    $\\Delta = D(q, p_S^\\varepsilon) - D(q, p_O^\\varepsilon)$ (Section 4): the forward
    process, the reference sample, the repetitions and the arithmetic of each
    [`jaxflow.studies.relative_distance_sweep`][] it runs, and the settings of the
    intervals on $P(\\Delta > 0)$ and of the bootstrap of the transition $n^*$.

    **Fields** (beside `m`, `s` of $p$):

    - `T`, `lam`: the forward jump's time $T$ and noise scale $\\lambda$.
    - `reference_size`: $N_O$, the reference sample's size, or `None` to compare with
      $p$ itself.
    - `draws`: noise draws per training point.
    - `gram_dtype`: the dtype of the reference sample's Gram matmul.
    - `confidence`, `resamples`: the Wilson and bootstrap intervals (read by the table
      only: changing them reuses the finished sweeps).
    - `chunk_size`: repetitions per compiled call.

    Each final preset declares, with its own default, `repetitions` ($R$, independent
    repetitions: new data, reference and noise each) and `arithmetic` (`exact` and/or
    `reference`, [H]'s implementation's float32 arithmetic, run on the same draws).
    """

    cell_independent: ClassVar[frozenset[str]] = frozenset({"confidence", "resamples"})

    if typing.TYPE_CHECKING:
        # Declared by each final preset, with its own default.
        repetitions: int
        arithmetic: tuple[str, ...]

    T: float = param(2.0, "diffusion time T", rule=positive)
    lam: float = param(1.0, "noise scale lambda (l = lambda e^-2T)", rule=positive)
    reference_size: int | None = param(
        10_000, "N_O, the reference sample's size (none: compare with p)", rule=at_least(2)
    )
    draws: int = param(1, "noise draws k per training point", rule=at_least(1))
    gram_dtype: Literal["float32", "float64"] = param(
        "float32",
        "dtype of the reference sample's Gram matmul (float32: bounded, uncertain signs redone "
        "in float64)",
    )
    confidence: float = param(
        0.95, "confidence level of the Wilson and bootstrap intervals", rule=unit_open
    )
    resamples: int = param(2000, "bootstrap resamples for n*", rule=at_least(1))
    chunk_size: int = param(10, "repetitions per compiled call", rule=at_least(1))

    def sweep_arrays(
        self, key, ns: tuple[int, ...], d: int, reference_size: int | None
    ) -> dict[str, np.ndarray]:
        """The arrays of one relative-distance sweep at dimension `d`, every arithmetic of
        `arithmetic` on the same draws in one program (the reference sample's pair sums
        formed once for all): what a cell stores, each array named
        `<arithmetic>_<field>`."""
        sweeps = relative_distance_sweep(
            ns,
            key=key,
            d=d,
            repetitions=self.repetitions,
            reference_size=reference_size,
            m=self.m,
            s=self.s,
            T=self.T,
            lam=self.lam,
            draws=self.draws,
            conventions=CONVENTIONS,
            arithmetic=tuple(self.arithmetic),
            gram_dtype=_GRAM[self.gram_dtype],
            chunk_size=self.chunk_size,
            # An inner bar over chunks where someone watches: a full-size sweep takes
            # minutes.
            progress=sys.stderr.isatty(),
        )
        arrays = {}
        for arithmetic, sweep in sweeps.items():
            fields = {k: getattr(sweep.relative, k) for k in _RELATIVE_FIELDS}
            fields |= {"kl": sweep.kl, "hellinger2": sweep.hellinger}
            fields["recomputed"] = sweep.recomputed
            arrays |= {f"{arithmetic}_{k}": np.asarray(v) for k, v in fields.items()}
        return arrays

    def sweep_footprint(self, ns: tuple[int, ...], d: int, reference_size: int | None):
        """An upper estimate of one sweep's stored arrays and working memory, in bytes."""
        stored = float(_CELL_BYTES) * self.repetitions * len(ns) * len(CONVENTIONS)
        reference = reference_size or 0
        # One repetition at a time: its reference sample (and a float32 copy), the
        # training sets with their noisy copies and the SVD of each fit, a few d x d
        # matrices per q, and the Gram blocks (up to 1024 or 1000 rows) of the kernel
        # overlaps; the chunk's results.
        working = 8.0 * (
            3 * reference * d
            + sum(4 * n * (self.draws + 1) * d for n in ns)
            + 40 * len(ns) * len(CONVENTIONS) * d * d
            + 6 * 1024 * 1024
            + 4 * 1024 * (max(ns) + reference + d)
        )
        return stored, working + stored * min(self.chunk_size, self.repetitions)

    def bootstrap_footprint(self) -> float:
        """The memory of one bootstrap of $n^*$, in bytes: every resample's key, its
        two crossings (first and last), and the copies that the quantiles sort."""
        return 64.0 * self.resamples


def arithmetic_arrays(arrays: Mapping[str, np.ndarray], arithmetic: str) -> dict[str, np.ndarray]:
    """One arithmetic's arrays of a cell that `sweep_arrays` stored, without the prefix."""
    prefix = f"{arithmetic}_"
    return {k.removeprefix(prefix): v for k, v in arrays.items() if k.startswith(prefix)}


def sweep_from_arrays(
    arrays: Mapping[str, np.ndarray],
    ns: tuple[int, ...],
    arithmetic: str,
    reference_size: int | None,
) -> RelativeDistanceSweep:
    """The sweep of one arithmetic from its arrays (`arithmetic_arrays` of a cell that
    `sweep_arrays` stored)."""
    fields = {k: jnp.asarray(arrays[k]) for k in _RELATIVE_FIELDS}
    return RelativeDistanceSweep(
        ns=tuple(int(n) for n in ns),
        conventions=CONVENTIONS,
        arithmetic=arithmetic,
        reference_size=reference_size,
        relative=RelativeDistance(**fields, arithmetic=arithmetic),
        kl=jnp.asarray(arrays["kl"]),
        hellinger=jnp.asarray(arrays["hellinger2"]),
        recomputed=int(arrays["recomputed"]),
    )


def transitions(sweep: RelativeDistanceSweep, key, confidence: float, resamples: int) -> dict:
    """The first and last upward crossings $n^*$ of 1/2 per convention, with their
    bootstrap intervals, as plain floats keyed by `(which, convention)`."""
    out = {}
    for which in ("first", "last"):
        point = sweep.transition(key=key, which=which, confidence=confidence, resamples=resamples)
        for c, convention in enumerate(sweep.conventions):
            out[which, convention] = {
                "n_star": float(point.n_star[c]),
                "lower": float(point.lower[c]),
                "upper": float(point.upper[c]),
                "crossing_fraction": float(point.crossing_fraction[c]),
            }
    return out


def _log_abs_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """$\\log\\lvert e^a - e^b \\rvert$, without leaving log space."""
    big, small = np.maximum(a, b), np.minimum(a, b)
    with np.errstate(divide="ignore", invalid="ignore"):
        return big + np.log(-np.expm1(small - big))


def pair_terms_decide(log_terms: np.ndarray) -> np.ndarray:
    """Whether the two samples' own kernel sums, not $q$, set the sign of an exact
    $\\Delta$: $\\lvert \\mathrm{pairs}_S - \\mathrm{pairs}_O \\rvert$ exceeds
    $2\\lvert \\int q\\, p_O^\\varepsilon - \\int q\\, p_S^\\varepsilon \\rvert$.

    `log_terms` holds an exact `RelativeDistance`'s six terms on its last axis (the
    cross terms already doubled). The pair difference does not depend on $q$ and is
    negative in expectation (the larger sample's narrower kernels overlap more), so
    where it decides, $\\Delta < 0$ whatever $q$ is.
    """
    pairs = _log_abs_difference(log_terms[..., _PAIRS_S], log_terms[..., _PAIRS_O])
    cross = _log_abs_difference(log_terms[..., _CROSS_S], log_terms[..., _CROSS_O])
    return pairs > cross


def plain_log_axis(axis, ticks=None) -> None:
    """Log scale with plain numbers (25, 50, 100) rather than powers of ten, at `ticks`
    when given (a short grid), else at 1, 2 and 5 times the powers of ten."""
    if ticks is not None and len(ticks) <= 8:
        axis.set_major_locator(FixedLocator(ticks))
    else:
        axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(ScalarFormatter())
    axis.set_minor_formatter(NullFormatter())


# Why P(Delta > 0) dips at n = d, for the figures.
DIP_NOTE = (
    "Dip at $n = d$, the interpolation threshold: the least-squares fit just interpolates, "
    "$W$ blows up,\n$q$ spreads out and overlaps neither sample, and the samples' own kernel "
    "sums decide the sign: $\\Delta < 0$"
)

"""The transition of [H]'s relative distance against the dimension: where $P(\\Delta > 0)$
crosses 1/2, in units of d, for several d."""

import dataclasses
import itertools
import math
from typing import ClassVar, Literal

import jax.random as jr
import numpy as np
import pyarrow as pa
from matplotlib.figure import Figure

from .. import _plotting as plot
from .._params import at_least, param, positive, show
from .._preset import Footprint, Tabulated
from ._common import training_sizes
from ._transition import (
    _AbstractTransition,
    arithmetic_arrays,
    CONVENTIONS,
    plain_log_axis,
    sweep_from_arrays,
    transitions,
)


_COLOURS = {"consistent": plot.series_colour(0), "reference": plot.series_colour(1)}


@dataclasses.dataclass(frozen=True)
class LinearTransitionVsD(_AbstractTransition):
    """The transition $n^*$ of [H]'s relative distance against the dimension $d$, with
    bootstrap intervals: does it stay at $n \\sim d$?

    At each $d$ of `ds`, the study of `linear-transition` (same model, estimator and
    arithmetic; see it for the definitions) runs on the sizes $n = \\operatorname{round}(f
    d)$ for the fractions $f$ of `n_over_d`, so that every $d$ is probed at the same
    $n/d$, and $n^*$ is where $P(\\Delta > 0)$ crosses 1/2 upwards, interpolated in
    $\\log n$, with a percentile bootstrap interval over repetitions.

    Goes beyond [H] (Section 4 locates the transition at one $d$): [H] reads the
    transition as sitting where the individual distance starts to fall, $n \\sim d$.

    $P(\\Delta > 0)$ need not be monotone in $n$: at the interpolation threshold $n = d$
    the fitted $W$ blows up, $q$ overlaps neither sample and the two samples' own kernel
    sums decide $\\Delta$ (negative in expectation), so $P$ dips there (see
    `linear-transition`). Both the first and the last upward crossing of 1/2 are
    reported; `crossing_fraction` below 1 means some bootstrap resamples do not cross
    on the grid (the transition is near its edge), and a $d$ without a crossing has
    $n^* = $ NaN ($P$ stays below 1/2 up to the largest $n$).

    The reference sample's size matters at large $d$: with a fixed $N_O$ the largest
    sizes $n = 10 d$ come close to it, the two kernel mixtures look alike, and
    $P(\\Delta > 0)$ levels off below 1 (at $d = 200$, $N_O = 10^4$ gave $P = 0.52$ at
    $n = 10 d$ where $N_O = 4 \\times 10^4$ gave 0.80, and $n^*$ fell from $9.5 d$ to
    $4.6 d$). `reference_per_d` scales $N_O$ with $d$.

    The dimensions are `ds`: the `d` that the linear model's presets share is not used
    here, and a value other than its default is refused.

    **Cells:** one relative-distance sweep per $d$, of every arithmetic at once (the same
    draws, one program), with the key `fold_in(key(seed), d)`: a dimension's cell does
    not depend on the other $d$s.

    **Rows:** one per $(d, \\text{arithmetic}, \\text{convention}, \\text{crossing})$:
    $n^*$ and its interval, also divided by $d$, the crossing fraction, the reference
    size used, the grid of sizes, and the signs left `uncertain`.

    **Figure** `transition_vs_d`: left, $n^*/d$ against $d$ with bootstrap intervals
    (filled: first crossing, hollow: last; markers on the top edge: no crossing on the
    grid); right, $P(\\Delta > 0)$ against $n/d$ for every $d$ (first arithmetic; solid:
    consistent, dotted: reference convention).

    It does not show the individual distances (see `linear-distance-vs-n`), nor whether
    $n^*/d$ settles for $d$ beyond the grid.

    Cost: the reference sample's terms grow like $N_O^2 d$ and $N_O d^2$ per size, so
    large $d$ dominates: the default run ($d$ up to 400, 60 repetitions, both arithmetics
    in one program per $d$) takes about 5.5 minutes on 2 idle CPU cores, most of it at
    $d = 400$.
    """

    name: ClassVar[str] = "linear-transition-vs-d"
    summary: ClassVar[str] = "[H] the transition n* of P(Delta > 0) against d, n*/d with intervals"
    # A dimension's sweep depends on d alone (its key folds d in), not on the other ds.
    cell_independent: ClassVar[frozenset[str]] = frozenset({"confidence", "resamples", "ds"})
    schema: ClassVar[pa.Schema] = pa.schema(
        [
            ("d", pa.int64()),
            ("arithmetic", pa.string()),
            ("convention", pa.string()),
            ("crossing", pa.string()),
            ("n_star", pa.float64()),
            ("n_star_lower", pa.float64()),
            ("n_star_upper", pa.float64()),
            ("n_star_over_d", pa.float64()),
            ("lower_over_d", pa.float64()),
            ("upper_over_d", pa.float64()),
            ("crossing_fraction", pa.float64()),
            ("repetitions", pa.int64()),
            ("reference_size", pa.int64()),
            ("ns", pa.string()),
            ("uncertain", pa.int64()),
            ("recomputed", pa.int64()),
            ("confidence", pa.float64()),
        ]
    )
    summary_columns: ClassVar[tuple[str, ...]] = (
        "d",
        "arithmetic",
        "convention",
        "crossing",
        "n_star",
        "n_star_lower",
        "n_star_upper",
        "n_star_over_d",
        "crossing_fraction",
    )

    ds: tuple[int, ...] = param(
        (10, 25, 50, 100, 200, 400), "dimensions d", rule=at_least(1), distinct=True
    )
    n_over_d: tuple[float, ...] = param(
        (0.25, 0.5, 0.6, 0.75, 0.9, 1.0, 1.1, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0),
        "training-set sizes as fractions of d (n = round(f d), at least 2)",
        rule=positive,
        distinct=True,
    )
    reference_per_d: int | None = param(
        None,
        "if set (with a reference_size), N_O = reference_per_d * d at each d instead: a fixed "
        "N_O comparable to the largest n hides the transition at large d",
        rule=at_least(1),
    )
    repetitions: int = param(
        60, "independent repetitions R per d (new data, reference and noise each)", rule=at_least(2)
    )
    arithmetic: tuple[Literal["exact", "reference"], ...] = param(
        ("exact",),
        "arithmetics, on the same draws: exact, reference ([H]'s float32 implementation)",
        distinct=True,
    )

    def check(self):
        narrow = [d for d in self.ds if len(self.sizes(d)) < 2]
        if narrow:
            raise ValueError(
                f"n_over_d={show(self.n_over_d)}: gives fewer than two sizes at "
                f"d={narrow[0]}; the transition needs at least two."
            )
        if self.reference_per_d is not None:
            if self.reference_size is None:
                raise ValueError(
                    "reference_per_d sizes a reference sample, but reference_size=none "
                    "(compare with p itself): set one of them only."
                )
            smallest = min(self.ds)
            if self.reference_per_d * smallest < 2:
                raise ValueError(
                    f"reference_per_d={self.reference_per_d} gives fewer than 2 reference points "
                    f"at d={smallest}; it must be at least {math.ceil(2 / smallest)}."
                )

    def quick(self):
        return dataclasses.replace(
            self,
            ds=(5, 10),
            n_over_d=(0.5, 1.0, 2.0, 5.0),
            reference_size=300,
            repetitions=30,
            resamples=300,
        )

    def sizes(self, d: int) -> tuple[int, ...]:
        """The training-set sizes at dimension `d`."""
        return training_sizes(d, self.n_over_d)

    def reference_size_at(self, d: int) -> int | None:
        """$N_O$ at dimension `d`: `reference_per_d * d` when set, else `reference_size`."""
        if self.reference_per_d is None or self.reference_size is None:
            return self.reference_size
        return self.reference_per_d * d

    def footprint(self):
        stored, working = 0.0, 0.0
        for d in self.ds:
            one, work = self.sweep_footprint(self.sizes(d), d, self.reference_size_at(d))
            stored += len(self.arithmetic) * one
            working = max(working, work)
        return Footprint(
            memory=stored + max(working, self.bootstrap_footprint()),
            disk=3 * stored,
            set_by=(
                "ds",
                "n_over_d",
                "reference_size",
                "reference_per_d",
                "repetitions",
                "draws",
                "resamples",
            ),
        )

    def cells(self):
        # One sweep per dimension, of every arithmetic at once (same draws, one program).
        return self.ds

    def cell_name(self, cell):
        return f"d{cell}"

    def prepare(self, *, progress: bool):
        del progress
        return None

    def _keys(self, d: int):
        k_sweep, k_boot = jr.split(jr.fold_in(jr.key(self.seed), d))
        return k_sweep, k_boot

    def compute(self, cell, context):
        del context
        k_sweep, _ = self._keys(cell)
        return self.sweep_arrays(k_sweep, self.sizes(cell), cell, self.reference_size_at(cell))

    def tabulate(self, outputs):
        rows, arrays = [], {}
        for d, arithmetic in itertools.product(self.ds, self.arithmetic):
            ns, reference_size = self.sizes(d), self.reference_size_at(d)
            piece = arithmetic_arrays(outputs[d], arithmetic)
            sweep = sweep_from_arrays(piece, ns, arithmetic, reference_size)
            crossings = transitions(sweep, self._keys(d)[1], self.confidence, self.resamples)
            uncertain = np.sum(~piece["certain"], axis=(0, 1))
            for c, convention in enumerate(CONVENTIONS):
                for which in ("first", "last"):
                    t = crossings[which, convention]
                    rows.append(
                        {
                            "d": d,
                            "arithmetic": arithmetic,
                            "convention": convention,
                            "crossing": which,
                            "n_star": t["n_star"],
                            "n_star_lower": t["lower"],
                            "n_star_upper": t["upper"],
                            "n_star_over_d": t["n_star"] / d,
                            "lower_over_d": t["lower"] / d,
                            "upper_over_d": t["upper"] / d,
                            "crossing_fraction": t["crossing_fraction"],
                            "repetitions": self.repetitions,
                            "reference_size": reference_size,
                            "ns": ",".join(map(str, ns)),
                            "uncertain": int(uncertain[c]),
                            "recomputed": int(piece["recomputed"]),
                            "confidence": self.confidence,
                        }
                    )
            fraction = sweep.probability(self.confidence).fraction
            arrays[f"d{d}_{arithmetic}_p_positive"] = np.asarray(fraction)
            arrays[f"d{d}_{arithmetic}_sign"] = piece["sign"]
            arrays[f"d{d}_ns"] = np.asarray(ns)
        return Tabulated(rows, arrays)

    def figures(self, table, arrays):
        return {"transition_vs_d": self._figure(table.to_pylist(), arrays)}

    def _figure(self, rows, arrays) -> Figure:
        fig, axes = plot.figure(2, width=6.0, height=4.8)
        ax, ax_p = axes[0]
        offsets = {"first": 0.97, "last": 1.03}
        for arithmetic in self.arithmetic:
            for convention in CONVENTIONS:
                for which, fill in (("first", True), ("last", False)):
                    sub = [
                        r
                        for r in rows
                        if (r["arithmetic"], r["convention"], r["crossing"])
                        == (arithmetic, convention, which)
                    ]
                    d = np.array([r["d"] for r in sub], float) * offsets[which]
                    y = np.array([r["n_star_over_d"] for r in sub])
                    lo = np.array([r["lower_over_d"] for r in sub])
                    hi = np.array([r["upper_over_d"] for r in sub])
                    ok = np.isfinite(y)
                    err = np.stack(
                        [
                            np.where(np.isfinite(lo), y - lo, 0.0),
                            np.where(np.isfinite(hi), hi - y, 0.0),
                        ]
                    )
                    colour = _COLOURS[convention]
                    mfc = colour if fill else "white"
                    ax.errorbar(
                        d[ok],
                        y[ok],
                        yerr=np.clip(err[:, ok], 0.0, None),
                        fmt="o-" if fill else "s--",
                        color=colour,
                        mfc=mfc,
                        ms=5,
                        capsize=3,
                        lw=1,
                        label=f"{convention}, {which} crossing"
                        + ("" if arithmetic == "exact" else f" ({arithmetic})"),
                    )
                    # No crossing on the grid: P(Delta > 0) stays below 1/2 up to the
                    # largest n, so n* lies beyond it (a marker on the top edge).
                    plot.top_edge_markers(ax, d[~ok], ms=7.0, color=colour, mfc=mfc)
        ax.plot(
            [],
            [],
            "^",
            color="grey",
            ms=7,
            label=f"no crossing up to $n = {max(self.n_over_d):g} d$",
        )
        ax.axhline(1.0, color="black", ls=":", lw=1, label="$n^* = d$")
        ax.set_xscale("log")
        ax.set_yscale("log")
        plain_log_axis(ax.xaxis, self.ds)
        plain_log_axis(ax.yaxis)
        ax.set_xlabel("dimension $d$")
        ax.set_ylabel(r"$n^* / d$ (bootstrap %g%% interval)" % (100 * self.confidence))
        ax.legend(fontsize=7, frameon=False)
        ax.grid(alpha=0.3, which="both")
        # P(Delta > 0) against n/d for every d (the first arithmetic).
        base = self.arithmetic[0]
        for i, d in enumerate(self.ds):
            ns = arrays[f"d{d}_ns"]
            p = arrays[f"d{d}_{base}_p_positive"]
            for c, style in enumerate(("-", ":")):
                ax_p.plot(
                    ns / d,
                    p[:, c],
                    style,
                    marker="o",
                    ms=3,
                    color=plot.series_colour(i),
                    label=f"$d = {d}$" if c == 0 else None,
                )
        ax_p.plot([], [], "k-", label="consistent convention")
        ax_p.plot([], [], "k:", label="reference convention")
        ax_p.axhline(0.5, color="grey", lw=0.8)
        ax_p.axvline(1.0, color="black", ls=":", lw=1)
        ax_p.set_xscale("log")
        plain_log_axis(ax_p.xaxis)
        ax_p.set_xlabel("$n / d$")
        ax_p.set_ylabel(r"$P(\Delta > 0)$" + ("" if base == "exact" else f" ({base} arithmetic)"))
        ax_p.legend(fontsize=7, frameon=False, ncol=2)
        ax_p.grid(alpha=0.3, which="both")
        ax_p.set_title(
            "dip at $n = d$: the interpolation threshold ($W$ blows up; see linear-transition)",
            fontsize=8,
        )
        reference = "p itself" if self.reference_size is None else f"$N_O = {self.reference_size}$"
        if self.reference_size is not None and self.reference_per_d is not None:
            reference = f"$N_O = {self.reference_per_d}\\,d$"
        fig.suptitle(
            f"Transition of the relative distance against $d$: {self.repetitions} repetitions "
            f"per $d$, reference: {reference}; filled: first crossing of 1/2, hollow: last"
        )
        return fig

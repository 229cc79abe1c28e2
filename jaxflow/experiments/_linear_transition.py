"""Presets for [H]'s memorization-to-generalization transition: P(Delta > 0) against the
training-set size n, and the transition n* against the dimension d ([H], Section 4;
docs/models.md#relative-distance)."""

import dataclasses
import math
from pathlib import Path
from typing import ClassVar, Literal

import jax.numpy as jnp
import jax.random as jr
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, LogLocator, NullFormatter, ScalarFormatter
from tqdm.auto import tqdm

from ..estimators import (
    ARITHMETICS,
    kl_infinite_data,
    RelativeDistance,
)
from ..studies import relative_distance_sweep, RelativeDistanceSweep
from . import _plotting as plot
from ._base import AbstractPreset, param, Results
from ._pieces import Pieces
from ._registry import register


_CONVENTIONS = ("consistent", "reference")
_GRAM = {"float32": jnp.float32, "float64": None}


def fine_grid(d: int) -> tuple[int, ...]:
    """Training-set sizes from d/10 to 10 d, denser around the interpolation threshold n = d."""
    fractions = (0.1, 0.25, 0.5, 0.6, 0.75, 0.9, 1.0, 1.1, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0)
    return tuple(sorted({max(2, round(f * d)) for f in fractions}))


def _plain_log_axis(axis, ticks=None) -> None:
    """Log scale with plain numbers (25, 50, 100) rather than powers of ten, at `ticks`
    when given (a short grid), else at 1, 2 and 5 times the powers of ten."""
    if ticks is not None and len(ticks) <= 8:
        axis.set_major_locator(FixedLocator(ticks))
    else:
        axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(ScalarFormatter())
    axis.set_minor_formatter(NullFormatter())


def _quartiles(values) -> tuple[float, float, float]:
    values = np.asarray(values, dtype=np.float64)
    q25, median, q75 = np.quantile(values, [0.25, 0.5, 0.75], method="lower")
    return float(q25), float(median), float(q75)


def _transitions(sweep: RelativeDistanceSweep, key, confidence: float, resamples: int) -> dict:
    """n* (first and last upward crossing of 1/2) per convention, as plain floats."""
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


def _cell_rows(
    sweep: RelativeDistanceSweep, d: int, confidence: float, transitions: dict, exact=None
):
    """One tidy row per (convention, n) of a sweep."""
    prob = sweep.probability(confidence)
    fraction, lower, upper = (np.asarray(x) for x in (prob.fraction, prob.lower, prob.upper))
    positives, uncertain = np.asarray(prob.positives), np.asarray(prob.uncertain)
    kl, hellinger = np.asarray(sweep.kl), np.asarray(sweep.hellinger)
    log_abs = np.asarray(sweep.relative.log_abs)
    sign = np.asarray(sweep.relative.sign)
    reps = sign.shape[0]
    rows = []
    for c, convention in enumerate(sweep.conventions):
        first, last = transitions["first", convention], transitions["last", convention]
        for g, n in enumerate(sweep.ns):
            kl_q25, kl_median, kl_q75 = _quartiles(kl[:, g, c])
            _, h_median, _ = _quartiles(hellinger[:, g, c])
            row = {
                "arithmetic": sweep.arithmetic,
                "convention": convention,
                "n": n,
                "n_over_d": n / d,
                "d": d,
                "reps": reps,
                "reference_size": -1 if sweep.reference_size is None else sweep.reference_size,
                "p_positive": float(fraction[g, c]),
                "p_lower": float(lower[g, c]),
                "p_upper": float(upper[g, c]),
                "positives": int(positives[g, c]),
                "uncertain": int(uncertain[g, c]),
                "recomputed": sweep.recomputed,
                "log_abs_delta_median": float(np.median(log_abs[:, g, c])),
                "kl_median": kl_median,
                "kl_q25": kl_q25,
                "kl_q75": kl_q75,
                "kl_finite_fraction": float(np.mean(np.isfinite(kl[:, g, c]))),
                "hellinger2_median": h_median,
                "n_star": first["n_star"],
                "n_star_lower": first["lower"],
                "n_star_upper": first["upper"],
                "n_star_last": last["n_star"],
                "n_star_last_lower": last["lower"],
                "n_star_last_upper": last["upper"],
            }
            if exact is not None:
                same = np.asarray(exact.relative.sign)[:, g, c] == sign[:, g, c]
                row["sign_agrees_with_exact"] = float(np.mean(same))
            rows.append(row)
    return rows


_RELATIVE_FIELDS = ("sign", "log_abs", "log_terms", "signs", "log_error", "certain")


def _sweep_arrays(sweep: RelativeDistanceSweep) -> dict[str, np.ndarray]:
    """A sweep's arrays by name: what a piece of a transition preset stores."""
    arrays = {k: np.asarray(getattr(sweep.relative, k)) for k in _RELATIVE_FIELDS}
    return arrays | {
        "kl": np.asarray(sweep.kl),
        "hellinger2": np.asarray(sweep.hellinger),
        "recomputed": np.asarray(sweep.recomputed),
    }


def _sweep_from_arrays(arrays, ns, arithmetic, reference_size) -> RelativeDistanceSweep:
    """The inverse of `_sweep_arrays`."""
    fields = {k: jnp.asarray(arrays[k]) for k in _RELATIVE_FIELDS}
    relative = RelativeDistance(**fields, arithmetic=arithmetic)
    return RelativeDistanceSweep(
        ns=tuple(ns),
        conventions=_CONVENTIONS,
        arithmetic=arithmetic,
        reference_size=reference_size,
        relative=relative,
        kl=jnp.asarray(arrays["kl"]),
        hellinger=jnp.asarray(arrays["hellinger2"]),
        recomputed=int(arrays["recomputed"]),
    )


@dataclasses.dataclass(frozen=True)
class _TransitionStudy(AbstractPreset):
    """The model, the reference sample and the estimator settings that the transition
    presets share, and their sweep, one finished piece per (d, arithmetic)."""

    piece_independent: ClassVar[tuple[str, ...]] = ("confidence", "resamples")

    m: float = param(10.0, "mean of every coordinate of p = N(m 1, s^2 I)")
    s: float = param(1.0, "standard deviation s of p")
    T: float = param(2.0, "diffusion time T")
    lam: float = param(1.0, "noise scale lambda (l = lambda e^-2T)")
    reference_size: int | None = param(
        10_000, "N_O, the reference sample's size (none: compare with p)"
    )
    reps: int = param(300, "independent repetitions R (new data, reference and noise each)")
    draws: int = param(1, "noise draws k per training point")
    arithmetic: tuple[str, ...] = param(("exact", "reference"), "arithmetics: exact, reference")
    gram: Literal["float32", "float64"] = param(
        "float32",
        "dtype of the reference sample's Gram matmul (float32: bounded, uncertain signs redone)",
    )
    confidence: float = param(0.95, "confidence level of the Wilson and bootstrap intervals")
    resamples: int = param(2000, "bootstrap resamples for n*")
    chunk: int = param(10, "repetitions per compiled call")

    def _check(self) -> None:
        if any(a not in ARITHMETICS for a in self.arithmetic) or not self.arithmetic:
            raise ValueError(
                f"`arithmetic` must be a non-empty tuple from {ARITHMETICS}, got {self.arithmetic}."
            )
        if self.reps < 2 or self.draws < 1 or self.chunk < 1 or self.resamples < 1:
            raise ValueError("`reps` must be >= 2 and `draws`, `chunk`, `resamples` positive.")
        if self.reference_size is not None and self.reference_size < 2:
            raise ValueError("`reference_size` must be >= 2, or none to compare with p itself.")

    def _reference_size(self, d: int) -> int | None:
        return self.reference_size

    def _sweep(self, pieces: Pieces, key, ns, d: int, arithmetic: str, progress: bool):
        """The sweep at dimension `d`, and its arrays, from `pieces` if a run finished it."""
        reference_size = self._reference_size(d)

        def compute():
            sweep = relative_distance_sweep(
                ns,
                key=key,
                d=d,
                repetitions=self.reps,
                reference_size=reference_size,
                m=self.m,
                s=self.s,
                T=self.T,
                lam=self.lam,
                draws=self.draws,
                conventions=_CONVENTIONS,
                arithmetic=arithmetic,
                gram_dtype=_GRAM[self.gram],
                chunk_size=self.chunk,
                progress=progress,
            )
            return _sweep_arrays(sweep)

        arrays = pieces(f"d{d}_{arithmetic}", compute)
        return _sweep_from_arrays(arrays, ns, arithmetic, reference_size), arrays


@register
@dataclasses.dataclass(frozen=True)
class LinearTransition(_TransitionStudy):
    """P(Delta > 0) against the training-set size n for [H]'s linear one-step denoiser,
    for both covariance conventions and in exact and reference arithmetic, with the
    transition n* (bootstrap interval) and the individual distances KL(q || p) and
    H^2(q, p) on the same axis ([H]; docs/models.md#model-h).

    The default is the reference study: d = 100, N_O = 10^4 reference points, R = 300
    repetitions, n in {25, 50, 75, 100}; `fine=true` adds sizes from d/10 to 10 d.
    Both arithmetics see the same draws, so `sign_agrees_with_exact` measures how much of
    the reference arithmetic's curve is rounding, and `uncertain` counts the signs that
    the arithmetic used cannot vouch for (hollow markers in the figure). The default run
    takes about two minutes on 2 CPU cores (some 45 s per arithmetic plus compilation).
    """

    name: ClassVar[str] = "linear-transition"
    summary: ClassVar[str] = (
        "[H] P(Delta > 0) against n (both conventions, exact and reference arithmetic), "
        "the transition n*, and KL/Hellinger on the same axis"
    )

    d: int = param(100, "dimension")
    ns: tuple[int, ...] = param(
        (25, 50, 75, 100), "training-set sizes (the reference study's grid)"
    )
    fine: bool = param(False, "add a finer grid of sizes from d/10 to 10 d")

    def quick(self):
        return dataclasses.replace(
            self, d=20, ns=(5, 10, 15, 20, 30, 50), reference_size=500, reps=40, resamples=400
        )

    def grid(self) -> tuple[int, ...]:
        sizes = set(self.ns) | (set(fine_grid(self.d)) if self.fine else set())
        return tuple(sorted(sizes))

    def run(self, out: Path, *, progress: bool = True) -> Results:
        self._check()
        ns = self.grid()
        pieces = Pieces(out, self)
        k_sweep, k_boot = jr.split(jr.key(self.seed))
        sweeps, rows, arrays = {}, [], {"ns": np.asarray(ns)}
        for arithmetic in tqdm(
            self.arithmetic, desc="linear-transition: arithmetic", disable=not progress
        ):
            # The same key for every arithmetic: the same draws, compared cell by cell.
            sweep, piece = self._sweep(pieces, k_sweep, ns, self.d, arithmetic, progress)
            sweeps[arithmetic] = sweep
            transitions = _transitions(sweep, k_boot, self.confidence, self.resamples)
            rows += _cell_rows(sweep, self.d, self.confidence, transitions, sweeps.get("exact"))
            arrays.update({f"{arithmetic}_{k}": v for k, v in piece.items()})
        kl_inf = float(kl_infinite_data(self.d, T=self.T, lam=self.lam, s=self.s))
        for row in rows:
            row["kl_inf"] = kl_inf
        summary = (
            "arithmetic",
            "convention",
            "n",
            "p_positive",
            "p_lower",
            "p_upper",
            "uncertain",
            "kl_median",
            "hellinger2_median",
            "n_star",
            "n_star_lower",
            "n_star_upper",
        )
        return Results(
            rows=rows,
            figures={"transition": self._figure(rows, ns, kl_inf)},
            summary=summary,
            arrays=arrays,
        )

    def _figure(self, rows, ns, kl_inf) -> Figure:
        fig = Figure(figsize=(12, 4.6), layout="constrained")
        ax, ax_d = fig.subplots(1, 2)
        styles = {"exact": ("-", "o"), "reference": (":", "s")}
        colours = {"consistent": "C0", "reference": "C3"}
        for arithmetic in self.arithmetic:
            line, marker = styles[arithmetic]
            for convention in _CONVENTIONS:
                sub = [
                    r
                    for r in rows
                    if (r["arithmetic"], r["convention"]) == (arithmetic, convention)
                ]
                x = np.array([r["n"] for r in sub], float)
                p = np.array([r["p_positive"] for r in sub])
                lo, hi = (
                    np.array([r["p_lower"] for r in sub]),
                    np.array([r["p_upper"] for r in sub]),
                )
                colour = colours[convention]
                ax.plot(
                    x,
                    p,
                    line,
                    marker=marker,
                    ms=4,
                    color=colour,
                    label=f"{convention} convention, {arithmetic} arithmetic",
                )
                ax.fill_between(
                    x, lo, hi, color=colour, alpha=0.12 if arithmetic == "exact" else 0.06, lw=0
                )
                # Cells whose signs are mostly not certain: P there is set by rounding.
                rounding = np.array([r["uncertain"] > r["reps"] / 2 for r in sub])
                ax.plot(x[rounding], p[rounding], marker, ms=8, mfc="white", color=colour, ls="")
                n_star, n_lo, n_hi = (
                    sub[0]["n_star"],
                    sub[0]["n_star_lower"],
                    sub[0]["n_star_upper"],
                )
                if arithmetic == "exact" and np.isfinite(n_star):
                    ax.axvline(n_star, color=colour, lw=1, ls="--")
                    if np.isfinite(n_lo) and np.isfinite(n_hi):
                        ax.axvspan(n_lo, n_hi, color=colour, alpha=0.08, lw=0)
        ax.axhline(0.5, color="grey", lw=0.8)
        ax.axvline(self.d, color="black", ls=":", lw=1, label="$n = d$")
        ax.set_xscale("log")
        _plain_log_axis(ax.xaxis, ns)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("training-set size $n$")
        ax.set_ylabel(r"$P(\Delta > 0)$ (Wilson %g%% interval)" % (100 * self.confidence))
        ax.set_title(
            r"dashed: $n^*$ (exact), shaded: its bootstrap interval; hollow: P set by rounding",
            fontsize=9,
        )
        ax.legend(fontsize=7, frameon=False)
        ax.grid(alpha=0.3, which="both")
        # The individual distances on the same axis (exact arithmetic; the conventions share them).
        base = self.arithmetic[0]
        sub = [r for r in rows if (r["arithmetic"], r["convention"]) == (base, "consistent")]
        x = np.array([r["n"] for r in sub], float)
        kl = np.array([r["kl_median"] for r in sub])
        ok = np.isfinite(kl)
        ax_d.plot(x[ok], kl[ok], "-o", ms=4, color="C2", label=r"$\mathrm{KL}(q\,\|\,p)$ median")
        lo, hi = np.array([r["kl_q25"] for r in sub]), np.array([r["kl_q75"] for r in sub])
        band = ok & np.isfinite(hi)
        ax_d.fill_between(x[band], lo[band], hi[band], color="C2", alpha=0.15, lw=0)
        plot.top_edge_markers(ax_d, x[~ok], color="C2", label=r"KL $= \infty$ ($q$ degenerate)")
        ax_d.axhline(kl_inf, color="C2", ls="--", lw=1, label=r"$\mathrm{KL}_\infty$")
        ax_d.set_yscale("log")
        ax_d.set_xscale("log")
        _plain_log_axis(ax_d.xaxis, ns)
        ax_d.set_xlabel("training-set size $n$")
        ax_d.set_ylabel(r"$\mathrm{KL}(q\,\|\,p)$")
        ax_d.axvline(self.d, color="black", ls=":", lw=1)
        ax_h = ax_d.twinx()
        h = np.array([r["hellinger2_median"] for r in sub])
        ax_h.plot(x, h, "-s", ms=3, color="C4", label=r"$H^2(q, p)$ median")
        ax_h.set_ylim(-0.02, 1.05)
        ax_h.set_ylabel(r"$H^2(q, p)$")
        handles = ax_d.get_legend_handles_labels()
        more = ax_h.get_legend_handles_labels()
        ax_d.legend(
            handles[0] + more[0], handles[1] + more[1], fontsize=7, frameon=True, loc="center left"
        )
        ax_d.set_title(f"individual distance ({base} arithmetic)", fontsize=9)
        ax_d.grid(alpha=0.3, which="both")
        reference = "p itself" if self.reference_size is None else f"$N_O = {self.reference_size}$"
        fig.suptitle(
            f"Linear one-step denoiser, $d = {self.d}$, $T = {self.T:g}$, "
            f"$\\lambda = {self.lam:g}$, {self.reps} repetitions, reference: {reference}"
        )
        return fig


@register
@dataclasses.dataclass(frozen=True)
class LinearTransitionVsD(_TransitionStudy):
    """The transition n* of [H]'s relative distance against the dimension d, with
    bootstrap intervals: does it stay at n ~ d? The grid of sizes is set relative to d
    (`n_over_d`), so every d is probed at the same n/d ([H], Section 4;
    docs/models.md#relative-distance; beyond the paper).

    P(Delta > 0) need not be monotone in n: at the interpolation threshold n = d the
    fitted W blows up and the training set's own kernel sum decides Delta, so P dips
    there. Both the first and the last upward crossing of 1/2 are reported;
    `crossing_fraction` below 1 means some bootstrap resamples do not cross on the grid
    (the transition is near its edge).

    The reference sample's size matters at large d: with a fixed $N_O$ the largest
    sizes n = 10 d come close to it, the two kernel mixtures look alike, and P(Delta > 0)
    levels off below 1 (at d = 200, N_O = 10^4 gives P = 0.52 at n = 10 d where
    N_O = 4 x 10^4 gives 0.80, and n* falls from 9.5 d to 4.6 d).
    `reference_per_d` scales $N_O$ with d.

    Cost: the reference sample's terms grow like $N_O^2 d$ and $N_O d^2$ per size, so
    large d dominates: the default run (d up to 400, 60 repetitions) takes about 11
    minutes on 2 CPU cores, some 30 s of it compiling per d; `--set ds=...` picks a
    subset. Each finished d is kept on disk, so a stopped run resumes.
    """

    name: ClassVar[str] = "linear-transition-vs-d"
    summary: ClassVar[str] = "[H] the transition n* of P(Delta > 0) against d, n*/d with intervals"
    # A dimension's sweep depends on d alone (its key folds d in), not on the other ds.
    piece_independent: ClassVar[tuple[str, ...]] = ("confidence", "resamples", "ds")

    ds: tuple[int, ...] = param((10, 25, 50, 100, 200, 400), "dimensions d")
    n_over_d: tuple[float, ...] = param(
        (0.25, 0.5, 0.6, 0.75, 0.9, 1.0, 1.1, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0),
        "training-set sizes as fractions of d (n = round(f d), at least 2)",
    )
    reps: int = param(60, "independent repetitions R per d")
    reference_per_d: int | None = param(
        None,
        "if set (with a reference_size), N_O = reference_per_d * d at each d instead: a fixed "
        "N_O comparable to the largest n hides the transition at large d",
    )
    arithmetic: tuple[str, ...] = param(("exact",), "arithmetics: exact, reference")

    def quick(self):
        return dataclasses.replace(
            self,
            ds=(5, 10, 20),
            n_over_d=(0.5, 1.0, 2.0, 5.0, 10.0),
            reference_size=300,
            reps=30,
            resamples=300,
        )

    def _reference_size(self, d: int) -> int | None:
        if self.reference_per_d is None or self.reference_size is None:
            return self.reference_size
        return self.reference_per_d * d

    def sizes(self, d: int) -> tuple[int, ...]:
        return tuple(sorted({max(2, round(f * d)) for f in self.n_over_d}))

    def run(self, out: Path, *, progress: bool = True) -> Results:
        self._check()
        if not self.ds or any(d < 1 for d in self.ds) or len(self.n_over_d) < 2:
            raise ValueError("`ds` must be positive and `n_over_d` must hold at least two sizes.")
        if self.reference_per_d is not None:
            if self.reference_size is None:
                raise ValueError(
                    "`reference_per_d` sizes a reference sample, but `reference_size` is none "
                    "(compare with p itself): set one of them only."
                )
            smallest = min(self.ds)
            if self.reference_per_d * smallest < 2:
                raise ValueError(
                    f"`reference_per_d` = {self.reference_per_d} gives fewer than 2 reference "
                    f"points at d = {smallest}; it must be at least {math.ceil(2 / smallest)}."
                )
        pieces = Pieces(out, self)
        key = jr.key(self.seed)
        rows, arrays = [], {}
        cells = [(d, a) for d in self.ds for a in self.arithmetic]
        for d, arithmetic in tqdm(
            cells, desc="linear-transition-vs-d: (d, arithmetic)", disable=not progress
        ):
            ns = self.sizes(d)
            k_sweep, k_boot = jr.split(jr.fold_in(key, d))
            sweep, _ = self._sweep(pieces, k_sweep, ns, d, arithmetic, progress)
            transitions = _transitions(sweep, k_boot, self.confidence, self.resamples)
            uncertain = np.sum(~np.asarray(sweep.relative.certain), axis=(0, 1))
            for c, convention in enumerate(_CONVENTIONS):
                for which in ("first", "last"):
                    t = transitions[which, convention]
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
                            "reps": self.reps,
                            "reference_size": sweep.reference_size or -1,
                            "ns": ",".join(map(str, ns)),
                            "uncertain": int(uncertain[c]),
                            "recomputed": sweep.recomputed,
                        }
                    )
            arrays[f"d{d}_{arithmetic}_p_positive"] = np.asarray(
                sweep.probability(self.confidence).fraction
            )
            arrays[f"d{d}_{arithmetic}_sign"] = np.asarray(sweep.relative.sign)
            arrays[f"d{d}_ns"] = np.asarray(ns)
        summary = (
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
        return Results(
            rows=rows,
            figures={"transition_vs_d": self._figure(rows, arrays)},
            summary=summary,
            arrays=arrays,
        )

    def _figure(self, rows, arrays) -> Figure:
        fig = Figure(figsize=(12, 4.6), layout="constrained")
        ax, ax_p = fig.subplots(1, 2)
        colours = {"consistent": "C0", "reference": "C3"}
        offsets = {"first": 0.97, "last": 1.03}
        for arithmetic in self.arithmetic:
            for convention in _CONVENTIONS:
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
                    colour = colours[convention]
                    ax.errorbar(
                        d[ok],
                        y[ok],
                        yerr=np.clip(err[:, ok], 0.0, None),
                        fmt="o-" if fill else "s--",
                        color=colour,
                        mfc=colour if fill else "white",
                        ms=5,
                        capsize=3,
                        lw=1,
                        label=f"{convention}, {which} crossing"
                        + ("" if arithmetic == "exact" else f" ({arithmetic})"),
                    )
                    # No crossing on the grid: P(Delta > 0) stays below 1/2 up to the
                    # largest n, so n* lies beyond it (a marker on the top edge).
                    mfc = colour if fill else "white"
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
        _plain_log_axis(ax.xaxis, self.ds)
        _plain_log_axis(ax.yaxis)
        ax.set_xlabel("dimension $d$")
        ax.set_ylabel(r"$n^* / d$ (bootstrap %g%% interval)" % (100 * self.confidence))
        ax.legend(fontsize=7, frameon=False)
        ax.grid(alpha=0.3, which="both")
        # P(Delta > 0) against n/d for every d (exact arithmetic's first convention).
        base = self.arithmetic[0]
        for i, d in enumerate(self.ds):
            ns = arrays[f"d{d}_ns"]
            p = arrays[f"d{d}_{base}_p_positive"]
            for c, (convention, style) in enumerate(zip(_CONVENTIONS, ("-", ":"))):
                ax_p.plot(
                    ns / d,
                    p[:, c],
                    style,
                    marker="o",
                    ms=3,
                    color=f"C{i}",
                    label=f"$d = {d}$" if c == 0 else None,
                )
        ax_p.plot([], [], "k-", label="consistent convention")
        ax_p.plot([], [], "k:", label="reference convention")
        ax_p.axhline(0.5, color="grey", lw=0.8)
        ax_p.axvline(1.0, color="black", ls=":", lw=1)
        ax_p.set_xscale("log")
        _plain_log_axis(ax_p.xaxis)
        ax_p.set_xlabel("$n / d$")
        ax_p.set_ylabel(r"$P(\Delta > 0)$")
        ax_p.legend(fontsize=7, frameon=False, ncol=2)
        ax_p.grid(alpha=0.3, which="both")
        reference = "p itself" if self.reference_size is None else f"$N_O = {self.reference_size}$"
        if self.reference_size is not None and self.reference_per_d is not None:
            reference = f"$N_O = {self.reference_per_d}\\,d$"
        fig.suptitle(
            f"Transition of the relative distance against $d$: {self.reps} repetitions per $d$, "
            f"reference: {reference}; filled: first crossing of 1/2, hollow: last"
        )
        return fig

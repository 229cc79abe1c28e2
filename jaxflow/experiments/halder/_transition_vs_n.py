"""[H]'s memorization-to-generalization transition against the training-set size: the
probability that the relative distance is positive, its transition and the individual
distances on one axis of n."""

import dataclasses
import functools
from typing import ClassVar, Literal

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pyarrow as pa
from matplotlib.figure import Figure

from ...data import Gaussian
from ...estimators import isotropic_divergences, kl_infinite_data
from ...flows import one_step_gaussian
from ...studies import sweep_inputs
from ...training import fit_affine
from .. import _plotting as plot
from .._params import at_least, param, positive, show
from .._preset import Footprint, Tabulated
from ._common import (
    _AbstractLinearModel,
    map_repetitions,
    rep_stats,
    rep_stats_fields,
    training_sizes,
)
from ._transition import (
    _AbstractTransition,
    arithmetic_arrays,
    CONVENTIONS,
    DIP_NOTE,
    pair_terms_decide,
    plain_log_axis,
    sweep_from_arrays,
    transitions,
)


# Sizes from d/10 to 10 d, denser around the interpolation threshold n = d (`fine`).
FINE_N_OVER_D = (0.1, 0.25, 0.5, 0.6, 0.75, 0.9, 1.0, 1.1, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0)
# The cells: the relative-distance sweep (every arithmetic), and the individual
# distances at the sizes the transition grid lacks.
_SWEEP, _DISTANCES = "sweep", "distances"
_COLOURS = {"consistent": plot.series_colour(0), "reference": plot.series_colour(1)}
_KL_COLOUR, _HELLINGER_COLOUR = plot.series_colour(2), plot.series_colour(3)
_STYLES = {"exact": ("-", "o"), "reference": (":", "s")}


@functools.cache
def _distance_fn(ns: tuple[int, ...], d: int):
    """KL(q || p) and H^2(q, p) for every repetition, size of `ns` and convention, as a
    function of (x0, xt, m, s, T, lam) compiled once, shapes (R, len(ns), 2), the
    repetitions split across every device.

    `x0` and `xt` hold each repetition's training set of the largest size and its noisy
    copies; size n is fitted to their first n points (a mask), so the sets are nested
    across n and one body compiles for every size.
    """
    n_max = max(ns)

    def fit(x0, xt, mask, p, T, lam):
        denoiser = fit_affine(x0, xt, mask=mask)
        qs = [
            one_step_gaussian(denoiser, x0, T=T, lam=lam, convention=c, mask=mask)
            for c in CONVENTIONS
        ]
        # For an isotropic p both follow from each q's eigendecomposition; KL sees only
        # the mean and the spectrum, which the conventions share (as the sweep takes it).
        kl, hellinger = jax.lax.map(
            lambda cov: isotropic_divergences(Gaussian(qs[0].mean, cov), p),
            jnp.stack([q.cov for q in qs]),
        )
        return jnp.full(len(CONVENTIONS), kl[0]), hellinger

    def one(r, x0s, xts, m, s, T, lam):
        p = Gaussian.isotropic(d, mean=m, std=s, dtype=m.dtype)
        masks = jnp.arange(n_max)[None, :] < jnp.asarray(ns)[:, None]
        # One size at a time: a batched LAPACK call can deadlock XLA:CPU's thread pool
        # (see `jaxflow._workarounds`).
        return jax.lax.map(lambda mask: fit(x0s[r], xts[r], mask, p, T, lam), masks)

    return lambda x0s, *args: map_repetitions(one, x0s.shape[0], x0s, *args)


@dataclasses.dataclass(frozen=True)
class LinearTransition(_AbstractTransition, _AbstractLinearModel):
    """$P(\\Delta > 0)$ against the training-set size $n$ for [H]'s linear one-step
    denoiser, the transition $n^*$, and the individual distances on the same axis.

    For each of $R$ repetitions and each $n$ of the grid: a training set $S \\sim p^n$,
    $p = \\mathcal N(m\\mathbf 1, s^2 I_d)$, its noisy copies after the forward jump, the
    affine least-squares fit $\\hat x_0 = W x_T + b$ and the generated Gaussian
    $q = \\mathcal N(\\mu_g, \\Sigma_g)$ under both covariance conventions
    ($v_T W W^\\top$, consistent; $v_T W^\\top W$, [H]'s reference implementation); a
    reference sample $O \\sim p^{N_O}$ per repetition; and the relative distance
    ([H], Section 4; docs/models.md#relative-distance)
    $\\Delta = D(q, p_S^\\varepsilon) - D(q, p_O^\\varepsilon)$, $D$ the squared $L^2$
    distance between densities, $p_X^\\varepsilon$ the Gaussian kernel mixture of a
    sample with $\\varepsilon = s N^{-1/d}$. $\\Delta > 0$ (closer to the population than
    to the training set) is generalization. Reported: $P(\\Delta > 0)$ with its Wilson
    interval, the first and last upward crossings $n^*$ of 1/2 (bootstrap intervals over
    repetitions), $\\mathrm{KL}(q\\,\\|\\,p)$ and $H^2(q, p)$ ([H], Section 3), and
    $\\mathrm{KL}_\\infty$.

    Reproduces [H]'s P(Delta > 0) study (Section 4): the default is [H]'s grid,
    $d = 100$, $N_O = 10^4$, $R = 300$, $n \\in \\{25, 50, 75, 100\\}$, in both
    arithmetics on the same draws: `exact` (every term in log space, each sign certified
    against a rounding bound) and `reference` ([H]'s implementation's float32 arithmetic,
    to tell how much of its curve is rounding). `fine=true` adds sizes from $d/10$ to
    $10 d$ to that grid.

    What the default run shows (seed 0):

    - exact arithmetic, consistent convention: $P(\\Delta > 0) = 0$ at $n = 25, 50, 75$
      and 0.023 at $n = d$: no crossing of 1/2 on [H]'s grid;
    - exact arithmetic, reference convention: 0.06, 0.18, 0.71 at $n = 25, 50, 75$
      (a crossing at $n^* \\approx 64$, bootstrap interval 62-66), then 0.023 at $n = d$:
      the crossing does not persist (the dip below);
    - reference arithmetic: the exact values at $n = 25$; at $n = 50$ 0.20 against the
      exact 0.18 (reference convention, 30 of the 300 signs `uncertain`); at $n = 75$
      0.54 (consistent) and 1.0 (reference convention), and at $n = 100$ 1.0 in both,
      where the exact arithmetic gives 0, 0.71 and 0.023, with 297 to 300 of the 300
      signs `uncertain` and, at $n = d$, 2% of them equal to the exact ones: float32
      cannot resolve $\\Delta$, some 13 decimal digits below the terms it subtracts, so
      [H]'s rise to 1 at $n \\approx d$ is round-off, not a transition;
    - the dip at $n = d$ (exact arithmetic): the interpolation threshold. The
      least-squares fit has just enough points to interpolate, $\\lVert W \\rVert_2$
      peaks (a median of about 280 at $n = d = 100$, against 24 at $n = 75$ and 60 at
      $n = 110$), $q$ spreads far beyond $p$ and overlaps neither kernel mixture, and
      $\\Delta$ reduces to the difference of the two samples' own pair terms,
      $\\mathrm{pairs}_S - \\mathrm{pairs}_O$, which is negative in expectation (the
      larger sample's narrower kernels overlap more). `pair_terms_decide`, the fraction
      of repetitions where that difference outweighs the one $q$ makes, is 1 at
      $n = d$ and 0 at $n = 25, 50, 75$, in both conventions;
    - beyond $d$ (exact arithmetic, 30 repetitions): $\\mathrm{KL}(q\\,\\|\\,p)$ falls
      from 276 at $n = 110$ to 12.3 at $n = 10 d$ ($\\mathrm{KL}_\\infty = 9.4$), while
      $H^2$ stays above 0.98: at $d = 100$ the generated and sampling distributions
      barely overlap even at $n = 10 d$.

    The individual distances are infinite for $n \\le d$ ($q$ is degenerate, rank
    $\\le n - 1$), so [H]'s grid alone shows none: `distance_n_over_d` adds sizes beyond
    $d$, where $\\mathrm{KL}(q\\,\\|\\,p)$ and $H^2$ are finite and fall towards their
    floor. Those sizes need no reference sample and no $\\Delta$, and the distances vary
    little between repetitions there, so they take `distance_repetitions` training sets
    of the largest size (drawn as the sweep draws that size) and fit each smaller size
    to the first $n$ points.

    **Cells:** `d100_sweep`, one relative-distance sweep of every arithmetic at once
    (every repetition, size and convention; the same draws, one program, the reference
    sample's pair sums formed once for both), and `d100_distances`, the exact individual
    distances at the sizes the transition grid lacks (all of them when `exact` is not
    run).

    **Rows:** one per (arithmetic, convention, $n$). `transition_grid` is true where
    $P(\\Delta > 0)$ was measured; elsewhere (the distance sizes, exact arithmetic) the
    columns of $\\Delta$ and $n^*$ are null. `uncertain` counts the signs that the
    arithmetic cannot vouch for, `sign_agrees_with_exact` the fraction of signs equal
    to the exact arithmetic's on the same draws, `pair_terms_decide` as above (exact
    arithmetic). The distances are medians, quartiles and means over repetitions.

    **Figure** `transition`: left, $P(\\Delta > 0)$ on the transition grid with Wilson
    bands (colour: convention; solid: exact, dotted: reference arithmetic; hollow
    markers: most signs uncertain, so set by rounding), $n^*$ and its interval (exact),
    and a note on the dip at $n = d$; right, $\\mathrm{KL}(q\\,\\|\\,p)$ (median and
    quartiles) and $H^2(q, p)$ (medians, both conventions) in exact arithmetic at every
    size, infinite values as markers on the top edge, $\\mathrm{KL}_\\infty$ dashed.

    It does not show a lasting transition at $n \\approx d$ in exact arithmetic, nor
    where $P(\\Delta > 0)$ settles above 1/2: [H]'s grid stops at $n = d$, where $P$
    dips (`fine=true` extends the grid to $10 d$; `linear-transition-vs-d` follows
    $n^*$ across $d$). It does not show $P(\\Delta > 0)$ or $\\Delta$ beyond the
    grid (only the individual distances), nor more than one denoising step
    (`linear-steps`).

    Cost of the default run: about 55-60 s as a whole command on 2 idle CPU cores: the
    sweep of both arithmetics about 43-48 s, most of it the reference sample's
    $O(N_O^2 d)$ pair sums (formed once for both arithmetics), plus about 5 s of
    compilation (one program, whatever the grid); the distances beyond $d$ about 3 s,
    the table and figure about 3 s. The repetitions are split across every device.
    """

    name: ClassVar[str] = "linear-transition"
    summary: ClassVar[str] = (
        "[H] P(Delta > 0) against n (both conventions, exact and reference arithmetic), "
        "the transition n*, and KL/Hellinger on the same axis"
    )
    schema: ClassVar[pa.Schema] = pa.schema(
        [
            ("arithmetic", pa.string()),
            ("convention", pa.string()),
            ("n", pa.int64()),
            ("n_over_d", pa.float64()),
            ("d", pa.int64()),
            ("repetitions", pa.int64()),
            ("reference_size", pa.int64()),
            ("transition_grid", pa.bool_()),
            ("p_positive", pa.float64()),
            ("p_lower", pa.float64()),
            ("p_upper", pa.float64()),
            ("positives", pa.int64()),
            ("uncertain", pa.int64()),
            ("recomputed", pa.int64()),
            ("sign_agrees_with_exact", pa.float64()),
            ("log_abs_delta_median", pa.float64()),
            ("pair_terms_decide", pa.float64()),
            *rep_stats_fields("kl"),
            ("kl_finite_fraction", pa.float64()),
            *rep_stats_fields("hellinger2"),
            ("kl_inf", pa.float64()),
            ("n_star", pa.float64()),
            ("n_star_lower", pa.float64()),
            ("n_star_upper", pa.float64()),
            ("n_star_last", pa.float64()),
            ("n_star_last_lower", pa.float64()),
            ("n_star_last_upper", pa.float64()),
            ("confidence", pa.float64()),
        ]
    )
    summary_columns: ClassVar[tuple[str, ...]] = (
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

    ns: tuple[int, ...] = param(
        (25, 50, 75, 100),
        "training-set sizes of P(Delta > 0) ([H]'s grid)",
        rule=at_least(2),
        distinct=True,
    )
    fine: bool = param(False, "add sizes from d/10 to 10 d to the grid of P(Delta > 0)")
    distance_n_over_d: tuple[float, ...] = param(
        (1.1, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0),
        "further sizes, as fractions of d, for KL and Hellinger alone (finite only for n > d)",
        rule=positive,
        distinct=True,
        nonempty=False,
    )
    distance_repetitions: int = param(
        30,
        "repetitions at those further sizes (the distances vary little between repetitions "
        "once n > d)",
        rule=at_least(1),
    )
    repetitions: int = param(
        300, "independent repetitions R (new data, reference and noise each)", rule=at_least(2)
    )
    arithmetic: tuple[Literal["exact", "reference"], ...] = param(
        ("exact", "reference"),
        "arithmetics, on the same draws: exact, reference ([H]'s float32 implementation)",
        distinct=True,
    )

    def check(self):
        if len(self.grid()) < 2:
            raise ValueError(
                f"ns={show(self.ns)}: the transition needs at least two sizes (or fine=true)."
            )

    def quick(self):
        return dataclasses.replace(
            self,
            d=20,
            ns=(5, 10, 20, 40),
            reference_size=500,
            repetitions=40,
            resamples=400,
        )

    def grid(self) -> tuple[int, ...]:
        """The sizes of $P(\\Delta > 0)$: `ns`, and the fine sizes with `fine`."""
        fine = training_sizes(self.d, FINE_N_OVER_D) if self.fine else ()
        return tuple(sorted({*self.ns, *fine}))

    def distance_sizes(self) -> tuple[int, ...]:
        """The sizes of the distance cell: those of `distance_n_over_d` not in the
        transition grid, or with it when the exact arithmetic is not run."""
        sizes = set(training_sizes(self.d, self.distance_n_over_d))
        if "exact" in self.arithmetic:
            return tuple(sorted(sizes - set(self.grid())))
        return tuple(sorted(sizes | set(self.grid())))

    def footprint(self):
        stored, working = self.sweep_footprint(self.grid(), self.d, self.reference_size)
        distances = self.distance_sizes()
        stored_distances = 16.0 * self.distance_repetitions * len(distances) * len(CONVENTIONS)
        outputs = len(self.arithmetic) * stored + stored_distances
        # Beside every cell's arrays (kept until the table is written): the costlier of
        # one sweep's working memory and the distance cell's (its training sets, one fit's
        # SVD and a few d x d matrices).
        n_max = max(distances, default=2)
        working_distances = 8.0 * (
            (self.distance_repetitions + 4) * n_max * (self.draws + 1) * self.d + 40 * self.d**2
        )
        return Footprint(
            memory=outputs + max(working, working_distances, self.bootstrap_footprint()),
            disk=3 * outputs,
            set_by=(
                "d",
                "ns",
                "distance_n_over_d",
                "reference_size",
                "repetitions",
                "distance_repetitions",
                "draws",
                "resamples",
            ),
        )

    def cells(self):
        # One sweep of every arithmetic at once (same draws, one program), and the
        # distances beyond the grid.
        kinds = (_SWEEP, *((_DISTANCES,) if self.distance_sizes() else ()))
        return tuple((self.d, kind) for kind in kinds)

    def cell_name(self, cell):
        d, kind = cell
        return f"d{d}_{kind}"

    def prepare(self, *, progress: bool):
        del progress
        sizes = self.distance_sizes()
        return _distance_fn(sizes, self.d) if sizes else None

    def _keys(self):
        # The same sweep key for every arithmetic (and the distances): the same draws.
        k_sweep, k_boot = jr.split(jr.key(self.seed))
        return k_sweep, k_boot

    def compute(self, cell, context):
        d, kind = cell
        k_sweep, _ = self._keys()
        if kind == _SWEEP:
            return self.sweep_arrays(k_sweep, self.grid(), d, self.reference_size)
        # Each repetition's training set of the largest size, drawn as the relative-
        # distance sweep draws that size; the smaller sizes are its first n points.
        inputs = [
            sweep_inputs(
                r,
                max(self.distance_sizes()),
                key=k_sweep,
                d=d,
                m=self.m,
                s=self.s,
                T=self.T,
                lam=self.lam,
                reference_size=None,
                draws=self.draws,
            )
            for r in range(self.distance_repetitions)
        ]
        x0s, xts = (jnp.stack(x) for x in list(zip(*inputs))[:2])
        # As the sweep holds them: arrays of the default float dtype.
        model = [jnp.asarray(x, x0s.dtype) for x in (self.m, self.s, self.T, self.lam)]
        kl, hellinger = context(x0s, xts, *model)
        return {"kl": kl, "hellinger2": hellinger}

    def tabulate(self, outputs):
        ns, d = self.grid(), self.d
        _, k_boot = self._keys()
        common = {
            "d": d,
            "repetitions": self.repetitions,
            "reference_size": self.reference_size,
            "kl_inf": float(kl_infinite_data(d, T=self.T, lam=self.lam, s=self.s)),
            "confidence": self.confidence,
        }
        exact = arithmetic_arrays(outputs[d, _SWEEP], "exact") or None
        rows, arrays = [], {"ns": np.asarray(ns)}
        for arithmetic in self.arithmetic:
            piece = arithmetic_arrays(outputs[d, _SWEEP], arithmetic)
            sweep = sweep_from_arrays(piece, ns, arithmetic, self.reference_size)
            crossings = transitions(sweep, k_boot, self.confidence, self.resamples)
            prob = sweep.probability(self.confidence)
            fraction, lower, upper, positives, uncertain = (
                np.asarray(x)
                for x in (prob.fraction, prob.lower, prob.upper, prob.positives, prob.uncertain)
            )
            decide = pair_terms_decide(piece["log_terms"]) if arithmetic == "exact" else None
            for c, convention in enumerate(CONVENTIONS):
                first, last = crossings["first", convention], crossings["last", convention]
                for g, n in enumerate(ns):
                    rows.append(
                        {
                            "arithmetic": arithmetic,
                            "convention": convention,
                            "n": n,
                            "n_over_d": n / d,
                            **common,
                            "transition_grid": True,
                            "p_positive": float(fraction[g, c]),
                            "p_lower": float(lower[g, c]),
                            "p_upper": float(upper[g, c]),
                            "positives": int(positives[g, c]),
                            "uncertain": int(uncertain[g, c]),
                            "recomputed": int(piece["recomputed"]),
                            "sign_agrees_with_exact": None
                            if exact is None
                            else float(np.mean(exact["sign"][:, g, c] == piece["sign"][:, g, c])),
                            "log_abs_delta_median": float(np.median(piece["log_abs"][:, g, c])),
                            "pair_terms_decide": None
                            if decide is None
                            else float(np.mean(decide[:, g, c])),
                            **_distance_columns(piece["kl"][:, g, c], piece["hellinger2"][:, g, c]),
                            "n_star": first["n_star"],
                            "n_star_lower": first["lower"],
                            "n_star_upper": first["upper"],
                            "n_star_last": last["n_star"],
                            "n_star_last_lower": last["lower"],
                            "n_star_last_upper": last["upper"],
                        }
                    )
            arrays.update({f"{arithmetic}_{k}": v for k, v in piece.items()})
        sizes = self.distance_sizes()
        if sizes:
            piece = outputs[d, _DISTANCES]
            for c, convention in enumerate(CONVENTIONS):
                for g, n in enumerate(sizes):
                    rows.append(
                        {
                            **dict.fromkeys(self.schema.names),
                            "arithmetic": "exact",
                            "convention": convention,
                            "n": n,
                            "n_over_d": n / d,
                            **common,
                            "transition_grid": False,
                            "repetitions": self.distance_repetitions,
                            **_distance_columns(piece["kl"][:, g, c], piece["hellinger2"][:, g, c]),
                        }
                    )
            arrays.update(
                distance_ns=np.asarray(sizes),
                distance_kl=piece["kl"],
                distance_hellinger2=piece["hellinger2"],
            )
        return Tabulated(rows, arrays)

    def figures(self, table, arrays):
        del arrays
        return {"transition": self._figure(table.to_pylist())}

    def _figure(self, rows) -> Figure:
        fig, axes = plot.figure(2, width=6.0, height=4.8)
        ax, ax_d = axes[0]
        grid = sorted({r["n"] for r in rows if r["transition_grid"]})
        d = self.d
        for arithmetic in self.arithmetic:
            line, marker = _STYLES[arithmetic]
            for convention in CONVENTIONS:
                sub = _select(rows, arithmetic, convention, transition_grid=True)
                x = np.array([r["n"] for r in sub], float)
                p = np.array([r["p_positive"] for r in sub])
                lo = np.array([r["p_lower"] for r in sub])
                hi = np.array([r["p_upper"] for r in sub])
                colour = _COLOURS[convention]
                ax.plot(
                    x,
                    p,
                    line,
                    marker=marker,
                    ms=4,
                    color=colour,
                    label=f"{convention} convention, {arithmetic} arithmetic",
                )
                alpha = 0.12 if arithmetic == "exact" else 0.06
                ax.fill_between(x, lo, hi, color=colour, alpha=alpha, lw=0)
                # Cells whose signs are mostly not certain: P there is set by rounding.
                rounding = np.array([r["uncertain"] > r["repetitions"] / 2 for r in sub])
                ax.plot(x[rounding], p[rounding], marker, ms=8, mfc="white", color=colour, ls="")
                n_star, n_lo, n_hi = (sub[0][k] for k in ("n_star", "n_star_lower", "n_star_upper"))
                if arithmetic == "exact" and np.isfinite(n_star):
                    ax.axvline(n_star, color=colour, lw=1, ls="--")
                    if np.isfinite(n_lo) and np.isfinite(n_hi):
                        ax.axvspan(n_lo, n_hi, color=colour, alpha=0.08, lw=0)
        ax.axhline(0.5, color="grey", lw=0.8)
        ax.axvline(d, color="black", ls=":", lw=1, label="$n = d$")
        ax.set_xscale("log")
        plain_log_axis(ax.xaxis, grid)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("training-set size $n$")
        ax.set_ylabel(r"$P(\Delta > 0)$ (Wilson %g%% interval)" % (100 * self.confidence))
        ax.set_title(
            r"dashed: $n^*$ (exact), shaded: its bootstrap interval; hollow: most signs "
            "uncertain (P set by rounding)",
            fontsize=8,
        )
        ax.legend(fontsize=7, frameon=False, loc="upper left")
        ax.grid(alpha=0.3, which="both")
        _dip_note(ax, rows, d)
        self._distance_panel(ax_d, rows)
        reference = "p itself" if self.reference_size is None else f"$N_O = {self.reference_size}$"
        fig.suptitle(
            f"Linear one-step denoiser, $d = {d}$, $T = {self.T:g}$, "
            f"$\\lambda = {self.lam:g}$, {self.repetitions} repetitions, reference: {reference}"
        )
        return fig

    def _distance_panel(self, ax, rows) -> None:
        """KL and H^2 in exact arithmetic at every size: the transition grid's and the
        distance cell's."""
        d = self.d
        sub = sorted(
            (r for r in rows if (r["arithmetic"], r["convention"]) == ("exact", "consistent")),
            key=lambda r: r["n"],
        )
        x = np.array([r["n"] for r in sub], float)
        kl = np.array([r["kl_median"] for r in sub])
        ok = np.isfinite(kl)
        ax.plot(
            x[ok], kl[ok], "-o", ms=4, color=_KL_COLOUR, label=r"$\mathrm{KL}(q\,\|\,p)$ median"
        )
        lo, hi = np.array([r["kl_q25"] for r in sub]), np.array([r["kl_q75"] for r in sub])
        band = ok & np.isfinite(hi)
        ax.fill_between(x[band], lo[band], hi[band], color=_KL_COLOUR, alpha=0.15, lw=0)
        plot.top_edge_markers(
            ax, x[~ok], color=_KL_COLOUR, label=r"KL $= \infty$ ($q$ degenerate, $n \leq d$)"
        )
        ax.axhline(sub[0]["kl_inf"], color=_KL_COLOUR, ls="--", lw=1, label=r"$\mathrm{KL}_\infty$")
        ax.set_yscale("log")
        ax.set_xscale("log")
        plain_log_axis(ax.xaxis, x)
        ax.set_xlabel("training-set size $n$")
        ax.set_ylabel(r"$\mathrm{KL}(q\,\|\,p)$")
        ax.axvline(d, color="black", ls=":", lw=1)
        ax_h = ax.twinx()
        for convention, style in (("consistent", "-s"), ("reference", "x")):
            part = sorted(
                (r for r in rows if (r["arithmetic"], r["convention"]) == ("exact", convention)),
                key=lambda r: r["n"],
            )
            ax_h.plot(
                [r["n"] for r in part],
                [r["hellinger2_median"] for r in part],
                style,
                ms=3 if convention == "consistent" else 5,
                lw=1,
                color=_HELLINGER_COLOUR,
                label=rf"$H^2(q, p)$ median, {convention} convention",
            )
        ax_h.set_ylim(-0.02, 1.05)
        ax_h.set_ylabel(r"$H^2(q, p)$")
        handles, labels = ax.get_legend_handles_labels()
        more, more_labels = ax_h.get_legend_handles_labels()
        ax.legend(handles + more, labels + more_labels, fontsize=7, loc="lower left")
        ax.set_title(
            f"individual distances, exact arithmetic: median over {self.repetitions} "
            f"repetitions on the grid of P, {self.distance_repetitions} beyond",
            fontsize=8,
        )
        ax.grid(alpha=0.3, which="both")


def _select(rows, arithmetic, convention, *, transition_grid):
    return sorted(
        (
            r
            for r in rows
            if (r["arithmetic"], r["convention"], r["transition_grid"])
            == (arithmetic, convention, transition_grid)
        ),
        key=lambda r: r["n"],
    )


def _distance_columns(kl, hellinger) -> dict[str, float]:
    return {
        **rep_stats("kl", kl),
        "kl_finite_fraction": float(np.mean(np.isfinite(kl))),
        **rep_stats("hellinger2", hellinger),
    }


def _dip_note(ax, rows, d: int) -> None:
    """The note under the panel on the dip of P(Delta > 0) at n = d, with the measured
    share of repetitions in which the samples' pair terms decide the sign."""
    at_d = [
        r
        for r in rows
        if r["transition_grid"] and r["n"] == d and r["pair_terms_decide"] is not None
    ]
    if not at_d:
        return
    # The reference convention's curve is the one that rises before d and falls at it.
    r = max(at_d, key=lambda r: r["convention"] == "reference")
    share = (
        f"(exact arithmetic: they decide in {r['pair_terms_decide']:.0%} of the repetitions "
        f"at $n = d$, {r['convention']} convention)"
    )
    ax.text(
        0.0,
        -0.14,
        DIP_NOTE + "\n" + share,
        transform=ax.transAxes,
        fontsize=7,
        va="top",
        wrap=False,
    )

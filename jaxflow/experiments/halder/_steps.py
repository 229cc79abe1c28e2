"""The number of probability-flow steps with one affine denoiser per noise level: exact
distances and the relative distance of the Gaussian the flow generates."""

import dataclasses
from typing import ClassVar, Literal

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pyarrow as pa
from jaxtyping import Array, Float
from matplotlib.figure import Figure

from ...data import forward_ve, Gaussian, ve_start
from ...denoisers import PiecewiseAffine
from ...estimators import (
    hellinger_squared,
    KernelMixture,
    kl_divergence,
    relative_distance,
    wilson_interval,
)
from ...flows import AbstractSchedule, gaussian_probability_flow, Geometric, Karras
from ...training import fit_affine, wiener_piecewise_affine
from .. import _plotting as plot
from .._params import at_least, param, positive, unit_open
from .._preset import Footprint, Tabulated
from ._common import (
    _AbstractLinearModel,
    map_repetitions,
    rep_stats,
    rep_stats_fields,
    training_sizes,
)


_DISTANCES = ("kl_qp", "kl_pq", "hellinger2")
_SCHEDULES = {"geometric": Geometric(), "karras": Karras()}


class _GivenGrid(AbstractSchedule):
    """A grid of noise levels computed beforehand, passed as data: every number of
    steps, padded to one length, then shares one compilation of the flow."""

    levels: Float[Array, " grid"]

    def grid(self, sigma_max, sigma_min, steps):
        del sigma_max, sigma_min
        if self.levels.shape != (steps + 1,):
            raise ValueError(f"expected {steps + 1} levels, got {self.levels.shape[0]}.")
        return self.levels


@dataclasses.dataclass(frozen=True)
class _Context:
    p: Gaussian
    keys: jax.Array
    grids: jax.Array
    flow: object  # (keys, n, grid, levels) -> (means, covs, distances), compiled once
    relative: object  # (keys, n, means, covs) -> (positive, certain), compiled once


@dataclasses.dataclass(frozen=True)
class LinearSteps(_AbstractLinearModel):
    """The number of probability-flow steps with one affine denoiser per noise level: the
    generated distribution stays Gaussian, so its distances to $p$ and the relative
    distance $\\Delta$ are exact for every number of steps and training-set size $n$.

    For each $n$ and each of `repetitions` independent training sets
    $x_{0,1..n} \\sim p = \\mathcal{N}(m\\mathbf 1, s^2 I_d)$, one affine denoiser
    $D(y; \\sigma_l) = W_l y + b_l$ is fitted per level of the schedule's grid
    $\\sigma_{\\max} = \\sigma_0 > \\dots > \\sigma_S = \\sigma_{\\min}$ (least squares on
    `draws` noisy copies $x_0 + \\sigma_l z$ per point, or the noise-averaged Wiener
    fit), and the variance-exploding probability flow $dy/d\\sigma = (y - D(y;
    \\sigma))/\\sigma$ (Karras et al. 2022, eq. 4) is solved from a Gaussian start with $S$
    Euler or Heun steps. Each step is an affine map, so the output is exactly a Gaussian
    $q$. Reported: $\\mathrm{KL}(q\\,\\|\\,p)$, $\\mathrm{KL}(p\\,\\|\\,q)$, $H^2(q, p)$, and
    $P(\\Delta > 0)$ with $\\Delta = D(q, p_S^\\varepsilon) - D(q, r)$ the relative distance
    of [H] (training set's kernel mixture against a fresh sample's, or $p$).

    Goes beyond [H] (Halder, arXiv 2411.17807), which argues that more diffusion steps
    improve quality but need not reduce memorization, so that for finite $n$ there is
    an optimal number of steps; this preset tests the claim exactly with linear
    denoisers.

    **Cells:** one training-set size $n$ (every number of steps and repetition). Training
    sets are drawn at the largest size and the first $n$ kept (nested across $n$); every
    number of steps shares one compilation (grids padded by repeating $\\sigma_{\\min}$: a
    zero-length step is exactly the identity).

    **Rows:** one per $(n, \\text{steps})$: median, quartiles and mean over repetitions of
    each distance; $P(\\Delta > 0)$ with its Wilson interval at `confidence` and the
    fraction of certain signs (NaN when `reference` is `none`); `best_steps_kl`, the
    number of steps with the smallest median $\\mathrm{KL}(q\\,\\|\\,p)$ at that $n$.

    **Figure** `steps`: KL, $H^2$ and $P(\\Delta > 0)$ against the number of steps, one
    colour per $n$.

    It does not show a trained neural denoiser (the denoisers are affine, so the
    generated law is Gaussian) nor the one-step model of [H] itself (see
    `linear-distance-vs-n`).
    """

    name: ClassVar[str] = "linear-steps"
    summary: ClassVar[str] = (
        "[H] beyond the paper: exact KL and P(Delta > 0) of a multi-step probability flow "
        "with affine denoisers, against the number of steps and n"
    )
    schema: ClassVar[pa.Schema] = pa.schema(
        [
            ("n", pa.int64()),
            ("n_over_d", pa.float64()),
            ("d", pa.int64()),
            ("steps", pa.int64()),
            ("solver", pa.string()),
            ("schedule", pa.string()),
            ("start", pa.string()),
            ("fit", pa.string()),
            ("draws", pa.int64()),
            ("convention", pa.string()),
            ("sigma_max", pa.float64()),
            ("sigma_min", pa.float64()),
            ("repetitions", pa.int64()),
            *(f for key in _DISTANCES for f in rep_stats_fields(key)),
            ("reference", pa.string()),
            ("reference_size", pa.int64()),
            ("confidence", pa.float64()),
            ("p_positive", pa.float64()),
            ("p_lower", pa.float64()),
            ("p_upper", pa.float64()),
            ("sign_certain_fraction", pa.float64()),
            ("best_steps_kl", pa.int64()),
        ]
    )
    summary_columns: ClassVar[tuple[str, ...]] = (
        "n",
        "steps",
        "kl_qp_median",
        "kl_pq_median",
        "hellinger2_median",
        "best_steps_kl",
        "p_positive",
        "p_lower",
        "p_upper",
    )
    cell_independent: ClassVar[frozenset[str]] = frozenset({"confidence"})

    n_over_d: tuple[float, ...] = param(
        (0.5, 1.0, 2.0, 10.0),
        "training-set sizes as fractions of d (n = round(f d), at least 2)",
        rule=positive,
        distinct=True,
    )
    steps: tuple[int, ...] = param(
        (1, 2, 4, 8, 16, 32, 64), "numbers of solver steps", rule=at_least(1), distinct=True
    )
    sigma_max: float = param(
        80.0, "largest noise level of the variance-exploding flow (EDM)", rule=positive
    )
    sigma_min: float = param(
        0.002, "smallest noise level; the flow's output is y(sigma_min)", rule=positive
    )
    solver: Literal["euler", "heun"] = param("heun", "solver; each step is an exact affine map")
    schedule: Literal["geometric", "karras"] = param(
        "karras", "noise-level grid (EDM's by default)"
    )
    start: Literal["matched", "standard"] = param(
        "matched",
        "start law: N(xbar, (v + sigma_max^2) I) matched to the data (as [H]'s one-step start) "
        "or EDM's N(0, sigma_max^2 I)",
    )
    fit: Literal["lstsq", "wiener"] = param(
        "lstsq", "least squares on noisy copies x0 + sigma z per level, or the noise-averaged fit"
    )
    draws: int = param(1, "noise draws per training point and level", rule=at_least(1))
    reference: Literal["sample", "p", "none"] = param(
        "sample", "Delta's reference: a fresh sample's kernel mixture, p itself, or no Delta"
    )
    reference_size: int = param(1000, "size N_O of the reference sample", rule=at_least(1))
    confidence: float = param(
        0.95, "confidence level of the Wilson interval of P(Delta > 0)", rule=unit_open
    )
    repetitions: int = param(
        60,
        "independent repetitions (training set, noise, reference) per cell",
        rule=at_least(1),
    )

    def check(self):
        if not self.sigma_max > self.sigma_min:
            raise ValueError(
                f"sigma_max={self.sigma_max:g} must exceed sigma_min={self.sigma_min:g}."
            )

    def quick(self):
        return dataclasses.replace(
            self,
            d=8,
            n_over_d=(0.5, 2.0, 10.0),
            steps=(1, 4, 16),
            reference_size=200,
            repetitions=8,
        )

    def sizes(self) -> tuple[int, ...]:
        return training_sizes(self.d, self.n_over_d)

    def footprint(self):
        sizes = self.sizes()
        n_max, d, r = max(sizes), self.d, self.repetitions
        levels, count = max(self.steps) + 1, len(self.steps)
        # One cell's means and covariances for every repetition and number of steps (the
        # relative distance reads them all), and its distances and signs; the distances
        # and signs of every cell are kept until the table is written.
        cell = 8.0 * r * count * (d * d + d) + 8.0 * r * count * 5
        outputs = 8.0 * len(sizes) * r * count * 5
        # One repetition at a time: the per-level fits (W, b at every level), the noisy
        # copies and SVD of one level's fit, the flow's d x d maps, and the Gram blocks
        # of the kernel overlaps (blocks of up to 1024 rows).
        reference = self.reference_size if self.reference == "sample" else 0
        working = 8.0 * (
            levels * (d * d + d)
            + 4 * n_max * self.draws * d
            + 40 * d * d
            + 4 * 1024 * (n_max + reference + d)
        )
        return Footprint(
            memory=cell + outputs + working,
            disk=2 * outputs,
            set_by=("d", "n_over_d", "steps", "draws", "reference_size", "repetitions"),
        )

    def cells(self):
        return self.sizes()

    def cell_name(self, cell):
        return f"n{cell}"

    def prepare(self, *, progress: bool):
        del progress
        p = self.sampling_distribution()
        n_max = max(self.sizes())
        return _Context(
            p=p,
            keys=jr.split(jr.key(self.seed), self.repetitions),
            grids=jnp.asarray(self._grids(p.mean.dtype)),
            flow=_flow_fn(self, n_max, p),
            relative=_relative_fn(self, n_max, p),
        )

    def compute(self, cell, context):
        n = cell
        means, covs, distances = [], [], []
        for j, steps in enumerate(self.steps):
            mean, cov, dist = context.flow(context.keys, n, context.grids[j], steps + 1)
            means.append(mean)
            covs.append(cov)
            distances.append(dist)
        out = {"distances": jnp.stack(distances)}
        if self.reference != "none":
            out["positive"], out["certain"] = context.relative(
                context.keys, n, jnp.stack(means, 1), jnp.stack(covs, 1)
            )
        return out

    def tabulate(self, outputs):
        rows, arrays = [], {}
        for n in self.sizes():
            out = outputs[n]
            group = []
            for j, steps in enumerate(self.steps):
                v = out["distances"][j]
                arrays[f"distances_n{n}_steps{steps}"] = v
                row = {
                    "n": n,
                    "n_over_d": n / self.d,
                    "d": self.d,
                    "steps": steps,
                    "solver": self.solver,
                    "schedule": self.schedule,
                    "start": self.start,
                    "fit": self.fit,
                    "draws": self.draws,
                    "convention": "consistent",
                    "sigma_max": self.sigma_max,
                    "sigma_min": self.sigma_min,
                    "repetitions": self.repetitions,
                    **rep_stats("kl_qp", v[:, 0]),
                    **rep_stats("kl_pq", v[:, 1]),
                    **rep_stats("hellinger2", v[:, 2]),
                    "reference": self.reference,
                    "reference_size": self.reference_size if self.reference == "sample" else 0,
                    "confidence": self.confidence,
                }
                if self.reference != "none":
                    positive = out["positive"][:, j]
                    arrays[f"positive_n{n}_steps{steps}"] = positive
                    k = int(positive.sum())
                    lo, hi = wilson_interval(k, self.repetitions, self.confidence)
                    row.update(
                        p_positive=k / self.repetitions,
                        p_lower=float(lo),
                        p_upper=float(hi),
                        sign_certain_fraction=float(np.mean(out["certain"][:, j])),
                    )
                else:
                    row.update(
                        p_positive=np.nan,
                        p_lower=np.nan,
                        p_upper=np.nan,
                        sign_certain_fraction=np.nan,
                    )
                group.append(row)
            best = min(group, key=lambda r: r["kl_qp_median"])["steps"]
            for row in group:
                row["best_steps_kl"] = best
            rows += group
        return Tabulated(rows, arrays)

    def figures(self, table, arrays):
        del arrays
        return {"steps": steps_figure(table.to_pylist())}

    def _grids(self, dtype) -> np.ndarray:
        """The schedule's grid for every number of steps, each padded to
        `max(steps) + 1` levels by repeating sigma_min: a repeated level is a
        zero-length step, exactly the identity, so every number of steps shares one
        compilation."""
        schedule = _SCHEDULES[self.schedule]
        top = max(self.steps)
        sigma_max, sigma_min = (jnp.asarray(x, dtype) for x in (self.sigma_max, self.sigma_min))
        grids = []
        for steps in self.steps:
            grid = np.asarray(schedule.grid(sigma_max, sigma_min, steps))
            grids.append(np.concatenate([grid, np.full(top - steps, grid[-1])]))
        return np.stack(grids)


def _flow_fn(preset: LinearSteps, n_max: int, p: Gaussian):
    """The generated Gaussian and its distances to p for R repetitions, with the
    training-set size n (nested sets drawn at `n_max`, masked) and the padded grid of
    noise levels traced: one compilation for the whole sweep."""
    top = max(preset.steps)

    def one(key, n, grid, levels):
        k_data, k_noise, _ = jr.split(key, 3)
        x0 = p.sample(n_max, key=k_data)
        mask = jnp.arange(n_max) < n
        if preset.fit == "lstsq":
            # One least-squares fit per level on that level's own noisy copies
            # x0 + sigma z, level by level so that memory is that of one level; the
            # padding levels are skipped (never selected: the nearest level in
            # log sigma is the first of equal ones).
            def level(args):
                i, sigma, k = args

                def fit(_):
                    xs = forward_ve(x0, sigma[None], key=k, draws=preset.draws)[0]
                    den = fit_affine(x0, xs, mask=mask)
                    return den.weight, den.bias

                def skip(_):
                    return jnp.zeros((p.d, p.d), x0.dtype), jnp.zeros(p.d, x0.dtype)

                return jax.lax.cond(i < levels, fit, skip, None)

            index = jnp.arange(grid.shape[0])
            weight, bias = jax.lax.map(level, (index, grid, jr.split(k_noise, grid.shape[0])))
            den = PiecewiseAffine(grid, weight, bias)
        else:
            den = wiener_piecewise_affine(x0, grid, mask=mask)
        start = ve_start(x0, sigma_max=grid[0], matched=preset.start == "matched", mask=mask)
        q = gaussian_probability_flow(
            den,
            start,
            sigma_max=grid[0],
            sigma_min=grid[-1],
            steps=top,
            solver=preset.solver,
            schedule=_GivenGrid(grid),
        )
        distances = jnp.stack([kl_divergence(q, p), kl_divergence(p, q), hellinger_squared(q, p)])
        return q.mean, q.cov, distances

    def repetition(r, keys, n, grid, levels):
        return one(keys[r], n, grid, levels)

    return lambda keys, *args: map_repetitions(repetition, keys.shape[0], keys, *args)


def _relative_fn(preset: LinearSteps, n_max: int, p: Gaussian):
    """Whether Delta > 0 (and whether its sign is certain) for every repetition and
    number of steps at a training-set size n (traced: the nested sets drawn at `n_max`,
    masked), shape (R, S)."""

    def one(key, n, means, covs):
        k_data, _, k_ref = jr.split(key, 3)
        mask = jnp.arange(n_max) < n
        train = KernelMixture(p.sample(n_max, key=k_data), preset.s, mask=mask)
        if preset.reference == "sample":
            reference = KernelMixture(p.sample(preset.reference_size, key=k_ref), preset.s)
        else:
            reference = p

        def per_steps(args):
            delta = relative_distance(Gaussian(*args), train, reference)
            return delta.positive, delta.certain

        return jax.lax.map(per_steps, (means, covs))

    def repetition(r, keys, n, means, covs):
        return one(keys[r], n, means[r], covs[r])

    return lambda keys, *args: map_repetitions(repetition, keys.shape[0], keys, *args)


def steps_figure(rows: list[dict]) -> Figure:
    """KL, H^2 and P(Delta > 0) against the number of steps from the table's rows, one
    colour per training-set size."""
    first = rows[0]
    with_delta = first["reference"] != "none"
    fig, axes = plot.figure(2 + with_delta, width=5.2, height=4.2)
    axes = axes[0]
    ns = sorted({r["n"] for r in rows})
    for i, n in enumerate(ns):
        colour = plot.series_colour(i)
        sub = sorted((r for r in rows if r["n"] == n), key=lambda r: r["steps"])
        x = np.array([r["steps"] for r in sub], float)
        for ax, key in zip(axes[:2], ("kl_qp", "hellinger2")):
            y = np.array([r[f"{key}_median"] for r in sub])
            lo = np.array([r[f"{key}_q25"] for r in sub])
            hi = np.array([r[f"{key}_q75"] for r in sub])
            ok = np.isfinite(y) & np.isfinite(hi)
            ax.plot(x[ok], y[ok], "-o", color=colour, ms=3, label=f"$n = {n}$")
            ax.fill_between(x[ok], lo[ok], hi[ok], color=colour, alpha=0.15, lw=0)
            if key == "kl_qp" and not ok.all():
                # Infinite: q singular to working precision, as markers on the top edge.
                plot.top_edge_markers(ax, x[~ok], color=colour)
        if with_delta:
            f = np.array([r["p_positive"] for r in sub])
            lo = np.array([r["p_lower"] for r in sub])
            hi = np.array([r["p_upper"] for r in sub])
            axes[2].plot(x, f, "-o", color=colour, ms=3, label=f"$n = {n}$")
            axes[2].fill_between(x, lo, hi, color=colour, alpha=0.15, lw=0)
    labels = [
        r"$\mathrm{KL}(q\,\|\,p)$",
        r"$H^2(q, p)$",
        rf"$P(\Delta > 0)$ ({first['confidence']:.0%} Wilson)",
    ]
    for ax, label in zip(axes, labels):
        ax.set_xscale("log", base=2)
        ax.set_xlabel(f"{first['solver']} steps")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_yscale("log")
    if with_delta:
        axes[2].set_ylim(-0.02, 1.02)
        axes[2].axhline(0.5, color="black", ls=":", lw=1)
    axes[0].plot(
        [], [], "^", color="gray", ms=5, label=r"$\infty$ (q singular to working precision)"
    )
    axes[0].legend(fontsize=7, frameon=False)
    fig.suptitle(
        f"Probability flow with one affine denoiser per level, $d = {first['d']}$, "
        f"$\\sigma \\in [{first['sigma_min']:g}, {first['sigma_max']:g}]$ ({first['schedule']}), "
        f"median and quartiles over {first['repetitions']} repetitions"
    )
    return fig

"""Preset for the number of diffusion steps with affine denoisers (SCIENCE.md H4): exact
distances and the relative distance of the Gaussian a probability flow generates."""

import dataclasses
from pathlib import Path
from typing import ClassVar, Literal

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from ..data import forward_ve, Gaussian, ve_start
from ..denoisers import fit_affine, PiecewiseAffine, wiener_piecewise_affine
from ..estimators import (
    hellinger_squared,
    KernelMixture,
    kl_divergence,
    relative_distance,
    wilson_interval,
)
from ..flows._affine import propagate_on_grid
from ..flows._schedules import as_schedule
from . import _plotting as plot
from ._base import AbstractPreset, param, Results
from ._linear_distance import rep_stats
from ._pieces import Pieces
from ._registry import register


def _grids(preset: "LinearSteps", dtype) -> np.ndarray:
    """The schedule's grid for every number of steps, each padded to `max(steps) + 1`
    levels by repeating sigma_min: a repeated level is a zero-length step, exactly the
    identity, so every number of steps shares one compilation."""
    schedule = as_schedule(preset.schedule)
    top = max(preset.steps)
    sigma_max, sigma_min = (jnp.asarray(x, dtype) for x in (preset.sigma_max, preset.sigma_min))
    grids = []
    for steps in preset.steps:
        grid = np.asarray(schedule.grid(sigma_max, sigma_min, steps))
        grids.append(np.concatenate([grid, np.full(top - steps, grid[-1])]))
    return np.stack(grids)


def _flow_fn(preset: "LinearSteps", n_max: int, p: Gaussian):
    """The generated Gaussian and its distances to p for R repetitions, with the
    training-set size n (nested sets drawn at `n_max`, masked) and the padded grid of
    noise levels traced: one compilation for the whole sweep."""

    def one(key, n, grid, levels):
        k_data, k_noise, _ = jr.split(key, 3)
        x0 = p.sample(k_data, n_max)
        mask = jnp.arange(n_max) < n
        if preset.fit == "lstsq":
            # One least-squares fit per level on that level's own noisy copies
            # x0 + sigma z, level by level so that memory is that of one level; the
            # padding levels are skipped (never selected: the nearest level in
            # log sigma is the first of equal ones).
            def level(args):
                i, sigma, k = args

                def fit(_):
                    xs = forward_ve(k, x0, sigma[None], draws=preset.draws)[0]
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
        q = propagate_on_grid(den, start, grid, heun=preset.solver == "heun")
        distances = jnp.stack([kl_divergence(q, p), kl_divergence(p, q), hellinger_squared(q, p)])
        return q.mean, q.cov, distances

    # A loop, not vmap: a LAPACK call batched by vmap can deadlock XLA:CPU's thread pool
    # (see `jaxflow._workarounds`).
    return jax.jit(
        lambda keys, n, grid, levels: jax.lax.map(lambda key: one(key, n, grid, levels), keys)
    )


def _relative_fn(preset: "LinearSteps", n: int, n_max: int, p: Gaussian):
    """Whether Delta > 0 (and whether its sign is certain) for every repetition and
    number of steps at one n, shape (R, S)."""

    def one(key, means, covs):
        k_data, _, k_ref = jr.split(key, 3)
        train = KernelMixture(p.sample(k_data, n_max)[:n], preset.s)
        if preset.reference == "sample":
            reference = KernelMixture(p.sample(k_ref, preset.reference_size), preset.s)
        else:
            reference = p

        def per_steps(args):
            delta = relative_distance(Gaussian(*args), train, reference)
            return delta.positive, delta.certain

        return jax.lax.map(per_steps, (means, covs))

    return jax.jit(lambda keys, means, covs: jax.lax.map(lambda a: one(*a), (keys, means, covs)))


@register
@dataclasses.dataclass(frozen=True)
class LinearSteps(AbstractPreset):
    """The number of probability-flow steps with one affine least-squares denoiser per
    noise level (SCIENCE.md H4): the generated distribution stays Gaussian, so KL(q||p),
    the Hellinger distance and the relative distance Delta are exact for every number of
    steps and training-set size n. Does quality improve with steps while memorization
    (P(Delta > 0) low) does not?"""

    name: ClassVar[str] = "linear-steps"
    summary: ClassVar[str] = (
        "[H] beyond the paper: exact KL and P(Delta > 0) of a multi-step probability flow "
        "with affine denoisers, against the number of steps and n"
    )

    d: int = param(100, "dimension")
    m: float = param(10.0, "mean of every coordinate of p = N(m 1, s^2 I)")
    s: float = param(1.0, "standard deviation s of p")
    n_over_d: tuple[float, ...] = param(
        (0.5, 1.0, 2.0, 10.0), "training-set sizes as fractions of d"
    )
    steps: tuple[int, ...] = param((1, 2, 4, 8, 16, 32, 64), "numbers of solver steps")
    sigma_max: float = param(80.0, "largest noise level of the variance-exploding flow (EDM)")
    sigma_min: float = param(0.002, "smallest noise level; the flow's output is y(sigma_min)")
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
    draws: int = param(1, "noise draws per training point and level")
    reference: Literal["sample", "p", "none"] = param(
        "sample", "Delta's reference: a fresh sample's kernel mixture, p itself, or no Delta"
    )
    reference_size: int = param(1000, "size N_O of the reference sample")
    reps: int = param(60, "independent repetitions (training set, noise, reference) per cell")

    def quick(self):
        return dataclasses.replace(
            self, d=8, n_over_d=(0.5, 2.0, 10.0), steps=(1, 4, 16), reference_size=200, reps=8
        )

    def run(self, out: Path, *, progress: bool = True) -> Results:
        if min(self.d, self.reps, self.draws, self.reference_size, *self.steps) < 1:
            raise ValueError("`d`, `reps`, `draws`, `reference_size` and `steps` must be positive.")
        if not self.sigma_max > self.sigma_min > 0:
            raise ValueError("linear-steps needs sigma_max > sigma_min > 0.")
        p = Gaussian.isotropic(self.d, mean=self.m, std=self.s)
        ns = sorted({max(2, round(f * self.d)) for f in self.n_over_d})
        n_max = max(ns)
        keys = jr.split(jr.key(self.seed), self.reps)
        flow = _flow_fn(self, n_max, p)
        grids = jnp.asarray(_grids(self, p.mean.dtype))
        pieces = Pieces(out, self)
        bar = tqdm(
            total=len(ns) * len(self.steps), desc="linear-steps: (n, steps)", disable=not progress
        )

        def compute(n):
            means, covs, distances = [], [], []
            for j, steps in enumerate(self.steps):
                mean, cov, dist = flow(keys, n, grids[j], steps + 1)
                means.append(mean)
                covs.append(cov)
                distances.append(dist)
                bar.update()
            piece = {"distances": jnp.stack(distances)}
            if self.reference != "none":
                relative = _relative_fn(self, n, n_max, p)
                piece["positive"], piece["certain"] = relative(
                    keys, jnp.stack(means, 1), jnp.stack(covs, 1)
                )
            return piece

        values, positive, certain = {}, {}, {}
        for n in ns:
            piece = pieces(f"n{n}", lambda: compute(n))
            if f"n{n}" in pieces.resumed:
                bar.update(len(self.steps))
            for j, steps in enumerate(self.steps):
                values[n, steps] = piece["distances"][j]
                if self.reference != "none":
                    positive[n, steps] = piece["positive"][:, j]
                    certain[n, steps] = piece["certain"][:, j]
        bar.close()
        rows = []
        for n in ns:
            group = []
            for steps in self.steps:
                v = values[n, steps]
                row = {
                    "n": n,
                    "n_over_d": n / self.d,
                    "d": self.d,
                    "steps": steps,
                    "solver": self.solver,
                    "schedule": self.schedule,
                    "start": self.start,
                    "fit": self.fit,
                    "convention": "consistent",
                    "sigma_max": self.sigma_max,
                    "sigma_min": self.sigma_min,
                    "reps": self.reps,
                    **rep_stats("kl_qp", v[:, 0]),
                    **rep_stats("kl_pq", v[:, 1]),
                    **rep_stats("hellinger2", v[:, 2]),
                }
                if self.reference != "none":
                    k = int(positive[n, steps].sum())
                    lo, hi = wilson_interval(k, self.reps)
                    row.update(
                        reference=self.reference,
                        reference_size=self.reference_size if self.reference == "sample" else 0,
                        p_positive=k / self.reps,
                        p_lower=float(lo),
                        p_upper=float(hi),
                        sign_certain_fraction=float(np.mean(certain[n, steps])),
                    )
                group.append(row)
            best = min(group, key=lambda r: r["kl_qp_median"])["steps"]
            for row in group:
                row["best_steps_kl"] = best
            rows += group
        arrays = {f"distances_n{n}_steps{s}": values[n, s] for n, s in values}
        arrays.update({f"positive_n{n}_steps{s}": positive[n, s] for n, s in positive})
        summary = (
            "n",
            "steps",
            "kl_qp_median",
            "kl_pq_median",
            "hellinger2_median",
            "best_steps_kl",
        )
        if self.reference != "none":
            summary += ("p_positive", "p_lower", "p_upper")
        return Results(
            rows=rows, figures={"steps": self._figure(rows, ns)}, summary=summary, arrays=arrays
        )

    def _figure(self, rows, ns) -> Figure:
        with_delta = self.reference != "none"
        fig = Figure(figsize=(5.2 * (2 + with_delta), 4.2), layout="constrained")
        axes = fig.subplots(1, 2 + with_delta)
        for i, n in enumerate(ns):
            colour = f"C{i % 10}"
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
        labels = [r"$\mathrm{KL}(q\,\|\,p)$", r"$H^2(q, p)$", r"$P(\Delta > 0)$ (95% Wilson)"]
        for ax, label in zip(axes, labels):
            ax.set_xscale("log", base=2)
            ax.set_xlabel(f"{self.solver} steps")
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
            f"Probability flow with one affine denoiser per level, $d = {self.d}$, "
            f"$\\sigma \\in [{self.sigma_min:g}, {self.sigma_max:g}]$ ({self.schedule}), "
            f"median and quartiles over {self.reps} repetitions"
        )
        return fig

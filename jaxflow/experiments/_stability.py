"""Presets for the virtual-point stability test of [Z] (SCIENCE.md Z6.1, Z6.5): are the
sums of training points fixed points of a denoiser? On orthogonal data, for the
closed-form minimum-norm denoiser against the empirical optimal one; on an obtuse simplex,
for the closed form across noise levels."""

import dataclasses
from pathlib import Path
from typing import ClassVar, Literal

import jax.numpy as jnp
import jax.random as jr
import numpy as np
from tqdm.auto import tqdm

from ..data import obtuse_simplex, orthogonal
from ..denoisers import EmpiricalOptimal, MinNormObtuseSimplex, MinNormOrthogonal
from ..estimators import StabilityResult, virtual_point_stability
from . import _plotting as plot
from ._base import AbstractPreset, param, Results
from ._orthogonal import _alpha, _dtype
from ._registry import register


def _fixed_fraction(edges: np.ndarray, subsets: np.ndarray, rho: float) -> float:
    r"""The fraction of subset sums that are exact fixed points of the closed form.

    A vertex $v = a + \sum_{m \in S} e_m$ is fixed by
    $h(y) = a + \sum_n e_n\, \mathrm{clip}((u_n \cdot (y - a) - \rho) / (L_n - 2\rho), 0, 1)$
    iff every ramp is flat at the right end: $u_n \cdot (v - a) \ge L_n - \rho$ for
    $n \in S$ and $\le \rho$ for $n \notin S$. For orthogonal edges $u_n \cdot (v - a)$ is
    $L_n$ or 0, so every vertex is fixed; obtuse angles lower it by
    $-\sum_{m \in S \setminus n} u_n \cdot e_m$, so large subsets lose their fixed points
    first, and a small noise level (small $\rho$) loses them sooner.
    """
    lengths = np.linalg.norm(edges, axis=1)
    projections = (edges @ edges.T) / lengths[:, None]  # [n, m] = u_n . e_m
    member = np.zeros((len(subsets), len(edges)), bool)
    np.put_along_axis(member, subsets, True, axis=1)
    s = member.astype(edges.dtype) @ projections.T  # u_n . (v - a) per subset
    fixed = np.where(member, s >= lengths - rho, s <= rho).all(axis=1)
    return float(np.mean(fixed))


def _check(p, m: int, sigmas: tuple[float, ...], limit: float) -> None:
    if not 1 <= p.n <= p.d:
        raise ValueError(f"need 1 <= n <= d, got n={p.n}, d={p.d}.")
    if len(p.lengths) not in (1, p.n) or min(p.lengths) <= 0:
        raise ValueError(f"lengths must be positive, one value or n={p.n} values; got {p.lengths}.")
    if p.alpha is not None and p.alpha <= 0:
        raise ValueError(f"alpha must be positive, got {p.alpha}.")
    if not p.sizes or not all(0 <= k <= m for k in p.sizes):
        raise ValueError(f"sizes must be subset sizes in [0, {m}], got {p.sizes}.")
    if p.iterations < 1 or p.chunk_size < 1:
        raise ValueError("iterations and chunk_size must be positive integers.")
    if p.max_subsets is not None and p.max_subsets < 1:
        raise ValueError(f"max_subsets must be positive or none, got {p.max_subsets}.")
    if p.tol is not None and p.tol <= 0:
        raise ValueError(f"tol must be positive or none, got {p.tol}.")
    if not 0 < p.confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {p.confidence}.")
    bad = [s for s in sigmas if not 0 < s < limit]
    if bad:
        raise ValueError(
            f"sigma={bad[0]:g} is outside the closed form's range: it needs 0 < sigma < "
            f"min(L) / (2 alpha) = {limit:.4g}."
        )


def _lengths(p, dtype):
    return p.lengths[0] if len(p.lengths) == 1 else jnp.asarray(p.lengths, dtype)


def _rows(config: dict, result: StabilityResult, fixed: list[float | None]) -> list[dict]:
    rows = []
    for row, drift, fixed_fraction in zip(result.rows(), result.drift, fixed):
        drift = np.asarray(drift)
        rows.append(
            config
            | row
            | {
                "fixed_fraction": fixed_fraction,
                "median_drift": float(np.median(drift)),
                "max_drift": float(np.max(drift)),
            }
        )
    return rows


_HELP = {
    "d": "dimension d of the space.",
    "lengths": "the lengths L_n: one value for every edge, or n comma-separated values.",
    "alpha": "noise-ball radius rho = alpha * sigma of the closed form; none means sqrt(d).",
    "sizes": "subset sizes k: every k-subset sum of training points is a start.",
    "iterations": "fixed-point iterations y <- D(y; sigma) from each start.",
    "tol": "a start is stable if every iterate stays within this L-infinity distance; none "
    "means 0.2 * min L_n (Z6.1).",
    "max_subsets": "start from a random sample of this many subsets per size (drawn with "
    "the seed); none means every subset (C(30, 4) = 27405 quadruples).",
    "confidence": "confidence level of the Wilson intervals.",
    "chunk_size": "starts iterated at once (memory).",
    "dtype": "floating dtype of the computation.",
}


@dataclasses.dataclass(frozen=True)
class _StabilityStudy(AbstractPreset):
    """The data, the iteration and the tally settings that the stability presets share."""

    d: int = param(30, _HELP["d"])
    lengths: tuple[float, ...] = param((1.0,), _HELP["lengths"])
    alpha: float | None = param(None, _HELP["alpha"])
    sizes: tuple[int, ...] = param((2, 3, 4), _HELP["sizes"])
    iterations: int = param(100, _HELP["iterations"])
    tol: float | None = param(None, _HELP["tol"])
    max_subsets: int | None = param(None, _HELP["max_subsets"])
    confidence: float = param(0.95, _HELP["confidence"])
    chunk_size: int = param(2**15, _HELP["chunk_size"])
    dtype: Literal["float32", "float64"] = param("float64", _HELP["dtype"])

    def quick(self):
        return dataclasses.replace(self, max_subsets=300)

    def _test(self, denoiser, data, sigma, key) -> StabilityResult:
        """[`jaxflow.estimators.virtual_point_stability`][] with this preset's settings."""
        return virtual_point_stability(
            denoiser,
            data,
            sigma,
            sizes=self.sizes,
            iterations=self.iterations,
            tol=self.tol,
            max_subsets=self.max_subsets,
            key=key,
            chunk_size=self.chunk_size,
            confidence=self.confidence,
        )


@register
@dataclasses.dataclass(frozen=True)
class OrthogonalStability(_StabilityStudy):
    r"""The virtual-point stability test (SCIENCE.md Z6.1) on $N$ orthogonal points: the
    fixed-point iteration $y \leftarrow D(y; \sigma)$ started at every sum of $k$
    training points, counted stable if it stays within `tol` of its start.

    The closed-form minimum-norm denoiser keeps every subset sum (its range is the
    hyperbox, whose vertices are all fixed); the empirical optimal denoiser, which
    memorizes, pulls a sum of $k$ points to their centroid, so none is stable. ([Z]
    reports that a trained network lies in between: nearly all pairs, most triples, a
    minority of quadruples.)

    Writes `stability.png`: the stable fraction per size and denoiser with its Wilson
    interval, and the distribution of each start's largest drift.
    """

    name: ClassVar[str] = "orthogonal-stability"
    summary: ClassVar[str] = (
        "Z6.1: virtual-point stability of the closed-form min-norm denoiser vs the "
        "empirical optimal denoiser (orthogonal data)"
    )

    n: int = param(30, "number N of orthogonal training points x_n = L_n e_n (N <= d).")
    sigma: float = param(
        0.05, "noise level of the denoisers; the closed form needs sigma < min L / (2 alpha)."
    )
    denoisers: tuple[Literal["min-norm", "empirical"], ...] = param(
        ("min-norm", "empirical"),
        "denoisers to test: min-norm (closed form, Z2) and/or empirical (the optimal "
        "denoiser of the training set, which memorizes).",
    )

    def __post_init__(self):
        limit = min(self.lengths) / (2 * _alpha(self))
        sigmas = (self.sigma,) if "min-norm" in self.denoisers else ()
        _check(self, self.n, sigmas, limit)
        if not self.denoisers:
            raise ValueError("denoisers needs at least one of min-norm, empirical.")
        if self.sigma <= 0:
            raise ValueError(f"sigma must be positive, got {self.sigma}.")

    def run(self, out: Path, *, progress: bool = True) -> Results:
        del out, progress  # a few seconds per denoiser: no progress bar
        dtype = _dtype(self.dtype)
        points = orthogonal(None, self.d, self.n, lengths=_lengths(self, dtype), dtype=dtype).points
        key = jr.key(self.seed)
        config = {
            "d": self.d,
            "n": self.n,
            "alpha": _alpha(self),
            "sigma": self.sigma,
            "iterations": self.iterations,
            "seed": self.seed,
        }
        rows, results = [], {}
        for name in self.denoisers:
            if name == "min-norm":
                denoiser = MinNormOrthogonal(points, alpha=self.alpha)
            else:
                denoiser = EmpiricalOptimal(points)
            result = self._test(denoiser, points, self.sigma, key)
            rho = _alpha(self) * self.sigma
            fixed = [
                _fixed_fraction(np.asarray(points), np.asarray(s), rho)
                if name == "min-norm"
                else None
                for s in result.subsets
            ]
            rows += _rows(config | {"denoiser": name}, result, fixed)
            results[name] = result
        arrays = {"points": points, "key": jr.key_data(key)}
        for name, result in results.items():
            for k, subsets, drift in zip(result.sizes, result.subsets, result.drift):
                arrays[f"{name}_subsets_{k}"] = subsets
                arrays[f"{name}_drift_{k}"] = drift
        summary = (
            "denoiser",
            "size",
            "num_subsets",
            "num_stable",
            "fraction",
            "lower",
            "upper",
            "fixed_fraction",
            "median_drift",
        )
        return Results(
            rows=rows,
            figures={"stability": self._figure(rows, results)},
            summary=summary,
            arrays=arrays,
        )

    def _figure(self, rows, results):
        fig, axes = plot.figure(2, width=5.5, height=4.4)
        colours = {"min-norm": "#0072B2", "empirical": "#D55E00"}
        labels = {"min-norm": "min-norm closed form", "empirical": "empirical optimal"}
        ax = axes[0, 0]
        width = 0.8 / len(results)
        for j, name in enumerate(results):
            sub = [r for r in rows if r["denoiser"] == name]
            x = np.arange(len(sub)) + (j - (len(results) - 1) / 2) * width
            f = np.array([r["fraction"] for r in sub])
            err = plot.interval_errors(f, [r["lower"] for r in sub], [r["upper"] for r in sub])
            ax.bar(
                x,
                f,
                width,
                color=colours[name],
                alpha=0.85,
                yerr=err,
                capsize=4,
                label=labels[name],
            )
            for xi, r in zip(x, sub):
                ax.annotate(
                    f"{r['fraction']:.0%}\n{r['num_stable']:,}/{r['num_subsets']:,}",
                    (xi, r["upper"]),
                    xytext=(0, 3),
                    textcoords="offset points",
                    ha="center",
                    va="bottom",
                    fontsize=7,
                )
        ax.set_xticks(np.arange(len(self.sizes)), [f"k = {k}" for k in self.sizes])
        ax.set_xlabel("starts: sums of k training points")
        ax.set_ylabel(f"fraction stable ({self.confidence:.0%} Wilson interval)")
        ax.set_ylim(0, 1.25)
        ax.set_yticks(np.linspace(0, 1, 6))
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8, frameon=False, loc="upper right")
        ax.set_title("Which subset sums are stable?", fontsize=10)

        ax = axes[0, 1]
        rng = np.random.default_rng(0)  # jitter only, for the picture
        for i, k in enumerate(self.sizes):
            for j, name in enumerate(results):
                drift = np.asarray(results[name].drift[i])
                shown = drift if drift.size <= 1000 else rng.choice(drift, 1000, replace=False)
                x = i + (j - (len(results) - 1) / 2) * width
                ax.scatter(
                    x + rng.uniform(-0.3, 0.3, shown.size) * width,
                    shown,
                    s=4,
                    color=colours[name],
                    alpha=0.4,
                    lw=0,
                )
                ax.plot(
                    [x - 0.4 * width, x + 0.4 * width],
                    [np.median(drift)] * 2,
                    color="black",
                    lw=1.5,
                )
        ax.plot([], [], color="black", lw=1.5, label="median")
        tol = float(next(iter(results.values())).tol)
        ax.axhline(tol, color="black", ls="--", lw=1, label=f"tol = {tol:g}")
        ax.set_xticks(np.arange(len(self.sizes)), [f"k = {k}" for k in self.sizes])
        ax.set_xlabel("starts: sums of k training points")
        ax.set_ylabel(r"largest drift $\max_t |y^{(t)} - y^{(0)}|_\infty$")
        ax.legend(fontsize=8, frameon=False, loc="upper left")
        ax.grid(axis="y", alpha=0.3)
        ax.set_title(
            "How far the iterates move (stable: below tol; up to 1000 starts shown)", fontsize=10
        )
        fig.suptitle(
            f"Virtual-point stability, d = {self.d}, N = {self.n}, $\\sigma$ = {self.sigma:g}, "
            f"{self.iterations} iterations of $y \\leftarrow D(y; \\sigma)$",
            fontsize=10,
        )
        return fig


@register
@dataclasses.dataclass(frozen=True)
class ObtuseSimplexStability(_StabilityStudy):
    r"""The virtual-point stability test on an obtuse simplex (SCIENCE.md Z6.5) for the
    closed-form minimum-norm denoiser, across noise levels: start the fixed-point
    iteration $y \leftarrow h^*_{\alpha\sigma}(y)$ at $x_0 + \sum_{n \in S} (x_n - x_0)$
    for every $k$-subset $S$ of edges.

    Unlike orthogonal data, only some subset sums stay stable: the obtuse angles between
    edges pull the projection of a sum of $k$ edges onto each of them below its length,
    by $(k - 1)$ times the (negative) cosine for equal edges, and the sum is fixed only
    while the ramp's flat end $L - \rho$ still covers it. So stability falls with $k$ and
    returns as $\sigma$ grows. The rows compare the measured fraction with this exact
    fixed-point condition (`fixed_fraction`).

    Writes `stability.png`: the stable fraction against $\sigma$ for each $k$ with its
    Wilson interval and the fixed-point prediction, and the median drift.
    """

    name: ClassVar[str] = "obtuse-simplex-stability"
    summary: ClassVar[str] = (
        "Z6.5: on an obtuse simplex only some subset sums stay stable under the closed-form "
        "min-norm denoiser; stable fraction against sigma"
    )

    n: int = param(30, "number of edges x_n - x_0 (the simplex has n + 1 points; n <= d).")
    beta: float = param(
        0.5,
        "obtuseness in [0, 2): edges v_k = q_k - (beta / n) sum_j q_j; 0 gives right "
        "angles, 1 the most obtuse.",
    )
    sigma: tuple[float, ...] = param(
        (0.002, 0.004, 0.006, 0.008, 0.01, 0.012, 0.014, 0.016, 0.018, 0.02),
        "noise levels (a comma-separated sweep); the closed form needs sigma < min L / (2 alpha).",
    )

    def __post_init__(self):
        if not 0 <= self.beta < 2:
            raise ValueError(
                f"beta must lie in [0, 2) for obtuse or right angles, got {self.beta}."
            )
        if not self.sigma:
            raise ValueError("sigma needs at least one value.")
        _check(self, self.n, self.sigma, min(self.lengths) / (2 * _alpha(self)))

    def run(self, out: Path, *, progress: bool = True) -> Results:
        del out
        dtype = _dtype(self.dtype)
        data = obtuse_simplex(
            None, self.d, self.n, lengths=_lengths(self, dtype), beta=self.beta, dtype=dtype
        )
        points = np.asarray(data.points)
        edges = points[1:] - points[0]
        denoiser = MinNormObtuseSimplex(data.points, alpha=self.alpha)
        key = jr.key(self.seed)
        config = {
            "d": self.d,
            "n": self.n,
            "beta": self.beta,
            "alpha": _alpha(self),
            "iterations": self.iterations,
            "seed": self.seed,
        }
        rows, results = [], []
        for sigma in _progress(self.sigma, progress):
            result = self._test(denoiser, data, jnp.asarray(sigma, dtype), key)
            rho = _alpha(self) * sigma
            fixed = [_fixed_fraction(edges, np.asarray(s) - 1, rho) for s in result.subsets]
            rows += _rows(config | {"sigma": sigma}, result, fixed)
            results.append(result)
        cosine = edges @ edges.T / np.outer(*2 * [np.linalg.norm(edges, axis=1)])
        arrays = {
            "points": data.points,
            "key": jr.key_data(key),
            "sigma": np.asarray(self.sigma),
            "num_stable": np.stack([np.asarray(r.num_stable) for r in results]),
            "num_subsets": np.stack([np.asarray(r.num_subsets) for r in results]),
        }
        summary = (
            "sigma",
            "size",
            "num_subsets",
            "num_stable",
            "fraction",
            "lower",
            "upper",
            "fixed_fraction",
            "median_drift",
        )
        figure = self._figure(rows, float(results[0].tol), cosine)
        return Results(rows=rows, figures={"stability": figure}, summary=summary, arrays=arrays)

    def _figure(self, rows, tol, cosine):
        fig, axes = plot.figure(2, width=5.5, height=4.4)
        cmap = plot.colormap("viridis")
        colour = {k: cmap(i / max(len(self.sizes) - 1, 1) * 0.85) for i, k in enumerate(self.sizes)}
        for k in self.sizes:
            sub = sorted((r for r in rows if r["size"] == k), key=lambda r: r["sigma"])
            x = np.array([r["sigma"] for r in sub])
            f = np.array([r["fraction"] for r in sub])
            lo, hi = [np.array([r[c] for r in sub]) for c in ("lower", "upper")]
            ax = axes[0, 0]
            ax.errorbar(
                x,
                f,
                zorder=4,
                yerr=plot.interval_errors(f, lo, hi),
                color=colour[k],
                marker="o",
                ms=4,
                capsize=3,
                label=f"k = {k}",
            )
            ax.fill_between(x, lo, hi, color=colour[k], alpha=0.2, lw=0)
            ax.plot(
                x,
                [r["fixed_fraction"] for r in sub],
                ls=":",
                marker="D",
                ms=6,
                mfc="white",
                color=colour[k],
                zorder=3,
            )
            axes[0, 1].plot(
                x,
                [r["median_drift"] for r in sub],
                color=colour[k],
                marker="o",
                ms=4,
                label=f"k = {k}",
            )
        ax = axes[0, 0]
        ax.plot(
            [],
            [],
            color="black",
            ls=":",
            marker="D",
            ms=6,
            mfc="white",
            label="exact: the sum is a fixed point",
        )
        ax.set_ylim(-0.03, 1.08)
        ax.set_xlabel(r"noise level $\sigma$ (ramp margin $\rho = \alpha\sigma$)")
        ax.set_ylabel(f"fraction of k-subset sums stable ({self.confidence:.0%} Wilson)")
        ax.legend(fontsize=8, frameon=False, loc="center right")
        ax.grid(alpha=0.3)
        ax.set_title("Larger subset sums need a larger σ to stay stable", fontsize=10)
        ax = axes[0, 1]
        ax.axhline(tol, color="black", ls="--", lw=1, label=f"tol = {tol:g}")
        ax.set_xlabel(r"noise level $\sigma$")
        ax.set_ylabel(r"median largest drift $\max_t |y^{(t)} - y^{(0)}|_\infty$")
        ax.legend(fontsize=8, frameon=False, loc="upper right")
        ax.grid(alpha=0.3)
        ax.set_title("How far the iterates move (stable: below tol)", fontsize=10)
        off = cosine[~np.eye(len(cosine), dtype=bool)]
        spread = f"{off.min():.3g}" if np.ptp(off) < 1e-9 else f"{off.min():.3g} to {off.max():.3g}"
        fig.suptitle(
            f"Obtuse simplex: d = {self.d}, {self.n} edges, β = {self.beta:g} (edge cosines "
            f"{spread}), {self.iterations} iterations of "
            r"$y \leftarrow h^*_{\alpha\sigma}(y)$",
            fontsize=10,
        )
        return fig


def _progress(values, progress: bool):
    return tqdm(values, desc="stability", unit="sigma", disable=not progress)

r"""The virtual-point stability test on an obtuse simplex ([Z], Section 6): the closed-form
minimum-norm denoiser across noise levels, against its exact fixed-point thresholds."""

import dataclasses
from collections.abc import Mapping
from typing import ClassVar

import jax.numpy as jnp
import numpy as np
import pyarrow as pa
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ...data import obtuse_simplex
from ...denoisers import MinNormObtuseSimplex
from .. import _plotting as plot
from .._params import AbstractRule, param, positive
from .._preset import Arrays, Tabulated
from ._common import float_dtype
from ._stability import _AbstractStability, fixed_point_thresholds, SIZE_FIELDS, SUMMARY_COLUMNS


@dataclasses.dataclass(frozen=True)
class _Obtuseness(AbstractRule):
    """$\\beta \\in [0, 2)$, away from 1, where the edges sum to zero and the simplex is
    flat (the margin [`jaxflow.data.obtuse_simplex`][] refuses)."""

    margin: float = 1e-3

    def holds(self, value):
        return 0 <= value < 2 and abs(value - 1) >= self.margin

    def describe(self):
        return f"in [0, 2) and at least {self.margin:g} away from 1 (a flat simplex)"

    def violations(self):
        return (-1.0, 2.0, 1.0)


@dataclasses.dataclass(frozen=True)
class ObtuseSimplexStability(_AbstractStability):
    r"""Virtual-point stability on an obtuse simplex ([Z], Section 6, "only some subset
    sums stay stable") for the closed-form minimum-norm denoiser
    $h^*_{\alpha\sigma}$, across noise levels: the fixed-point iteration
    $y \leftarrow h^*_{\alpha\sigma}(y)$ started at $x_0 + \sum_{n \in S} (x_n - x_0)$
    for every $k$-subset $S$ of edges (or a sample of `max_subsets`).

    Unlike orthogonal data, a subset sum is a fixed point only from a noise level
    $\sigma^*(S)$ on (the module `jaxflow.experiments.zeno._stability` derives it): the
    obtuse angles pull the projection of a sum of $k$ edges onto each of them below its
    length, by $(k - 1) L |c|$ for equal lengths $L$ and edge cosines $c$, and the sum is
    fixed once the ramp's flat end $L - \alpha\sigma$ covers it:
    $\sigma^*_k = (k - 1) L |c| / \alpha$. So stability falls with $k$ and returns as
    $\sigma$ grows; a start that is not a fixed point escapes along a ramp.

    **Cells:** one per noise level in `sigma`; each returns every start's largest drift.

    **Rows:** one per $\sigma$ and subset size $k$: the count and fraction stable with its
    Wilson interval, the tolerance, the exact fraction of fixed points at that $\sigma$,
    the least and largest $\sigma^*(S)$ over the subsets started from, and the median and
    largest drift.

    **Figure** `stability.png`: the stable fraction against $\sigma$ for each $k$ with its
    Wilson interval, the exact fixed-point fraction at each $\sigma$, and the thresholds
    $\sigma^*(S)$ as step lines (the exact fraction of fixed points between the swept
    noise levels; a vertical step where every $k$-sum shares one threshold); and the
    median drift with the thresholds as vertical lines.

    !!! note
        It does not show a trained network, nor noise levels beyond the closed form's
        range $\sigma < \min_n L_n / (2\alpha)$, nor orthogonal data (`beta=0` gives the
        right-angle simplex, where every sum is fixed).
    """

    name: ClassVar[str] = "obtuse-simplex-stability"
    summary: ClassVar[str] = (
        "[Z] Sec. 6: on an obtuse simplex only some subset sums stay stable under the "
        "closed-form min-norm denoiser; stable fraction and exact thresholds against sigma"
    )
    schema: ClassVar[pa.Schema] = pa.schema(
        [
            pa.field("d", pa.int64()),
            pa.field("n", pa.int64()),
            pa.field("beta", pa.float64()),
            pa.field("alpha", pa.float64()),
            pa.field("iterations", pa.int64()),
            pa.field("seed", pa.int64()),
            pa.field("sigma", pa.float64()),
            *SIZE_FIELDS,
        ]
    )
    summary_columns: ClassVar[tuple[str, ...]] = ("sigma", *SUMMARY_COLUMNS)
    # Each cell is one noise level's test, whichever others run.
    cell_independent: ClassVar[frozenset[str]] = frozenset({"confidence", "tol", "sigma"})
    swept: ClassVar[str] = "sigma"

    beta: float = param(
        0.5,
        "obtuseness: edges v_k = q_k - (beta / n) sum_j q_j; 0 gives right angles, larger "
        "values more obtuse ones.",
        rule=_Obtuseness(),
    )
    sigma: tuple[float, ...] = param(
        (0.002, 0.004, 0.006, 0.008, 0.01, 0.012, 0.014, 0.016, 0.018, 0.02),
        "noise levels (a comma-separated sweep); the closed form needs sigma < min L / (2 alpha).",
        rule=positive,
        distinct=True,
    )

    def noise_levels(self):
        return self.sigma

    def cells(self) -> tuple[float, ...]:
        return self.sigma

    def cell_name(self, cell: float) -> str:
        return f"sigma-{cell!r}"

    def prepare(self, *, progress: bool):
        del progress
        dtype = float_dtype(self.dtype)
        data = obtuse_simplex(
            self.n, self.d, lengths=self.edge_lengths(dtype), beta=self.beta, dtype=dtype
        )
        return data, MinNormObtuseSimplex(data.points, alpha=self.alpha)

    def compute(self, cell: float, context) -> dict[str, np.ndarray]:
        data, denoiser = context
        return self.stability_arrays(denoiser, data, jnp.asarray(cell, data.points.dtype))

    def tabulate(self, outputs: Mapping[float, Arrays]) -> Tabulated:
        config = {
            "d": self.d,
            "n": self.n,
            "beta": self.beta,
            "alpha": self.closed_form_alpha(),
            "iterations": self.iterations,
            "seed": self.seed,
        }
        first = outputs[self.sigma[0]]
        points = first["points"]
        edges = points[1:] - points[0]
        rows, per_sigma = [], []
        for sigma in self.sigma:
            rho = self.closed_form_alpha() * sigma
            sub = self.size_rows(outputs[sigma], edges, rho)
            rows += [config | {"sigma": sigma} | r for r in sub]
            per_sigma.append(sub)
        arrays = {
            "points": points,
            "key": first["key"],
            "sigma": np.asarray(self.sigma),
            "num_stable": np.array([[r["num_stable"] for r in sub] for sub in per_sigma]),
            "num_subsets": np.array([[r["num_subsets"] for r in sub] for sub in per_sigma]),
        }
        for k in self.sizes:
            # The subsets do not depend on sigma: every cell draws them with the same key.
            subsets = first[f"subsets_{k}"]
            arrays[f"subsets_{k}"] = subsets
            arrays[f"threshold_{k}"] = fixed_point_thresholds(
                edges, subsets - 1, self.closed_form_alpha()
            )
        return Tabulated(rows, arrays)

    def figures(self, table: pa.Table, arrays: Mapping[str, np.ndarray]) -> dict[str, Figure]:
        rows = table.to_pylist()
        sizes = list(dict.fromkeys(r["size"] for r in rows))
        first = rows[0]
        fig, axes = plot.figure(2, width=5.5, height=4.4)
        cmap = plot.colormap("viridis")
        colour = {k: cmap(i / max(len(sizes) - 1, 1) * 0.85) for i, k in enumerate(sizes)}
        sigmas = np.array(sorted({r["sigma"] for r in rows}))
        pad = 0.05 * (np.ptp(sigmas) if len(sigmas) > 1 else sigmas[0])
        low, high = sigmas[0] - pad, sigmas[-1] + pad
        grid = np.linspace(low, high, 2001)
        points = arrays["points"]
        edges = points[1:] - points[0]
        # Beyond min L / (2 alpha) the closed form does not exist: no exact line there.
        limit = np.min(np.linalg.norm(edges, axis=1)) / (2 * first["alpha"])
        left, right = axes[0, 0], axes[0, 1]
        size_handles, spread_drawn = [], False
        for k in sizes:
            sub = sorted((r for r in rows if r["size"] == k), key=lambda r: r["sigma"])
            x = np.array([r["sigma"] for r in sub])
            f = np.array([r["fraction"] for r in sub])
            lo, hi = (np.array([r[c] for r in sub]) for c in ("lower", "upper"))
            left.errorbar(
                x,
                f,
                yerr=plot.interval_errors(f, lo, hi),
                color=colour[k],
                marker="o",
                ms=4,
                capsize=3,
                zorder=4,
            )
            left.fill_between(x, lo, hi, color=colour[k], alpha=0.2, lw=0)
            left.plot(
                x,
                [r["fixed_fraction"] for r in sub],
                ls="",
                marker="D",
                ms=6,
                mfc="white",
                color=colour[k],
                zorder=3,
            )
            # The exact fraction of fixed points at every sigma: a step at each threshold.
            thresholds = np.sort(arrays[f"threshold_{k}"])
            exact = np.searchsorted(thresholds, grid, side="right") / len(thresholds)
            exact = np.where(grid < limit, exact, np.nan)
            left.plot(grid, exact, color=colour[k], ls="--", lw=1.2, zorder=2)
            right.plot(x, [r["median_drift"] for r in sub], color=colour[k], marker="o", ms=4)
            t_min, t_max = thresholds[0], thresholds[-1]
            if t_max - t_min <= 1e-9 * high:
                right.axvline(t_min, color=colour[k], ls="--", lw=1.2)
                where = f"$\\sigma^*$ = {t_min:.4g}"
            else:
                right.axvspan(t_min, t_max, color=colour[k], alpha=0.15, lw=0)
                spread_drawn = True
                where = f"$\\sigma^*$ in [{t_min:.4g}, {t_max:.4g}]"
            # Every size in the legend with its threshold, also one never stable here.
            size_handles.append(
                Line2D([], [], color=colour[k], marker="o", ms=4, label=f"k = {k}: {where}")
            )
        tol = first["tol"]
        # One legend for both panels, below them: every size with its thresholds (also a
        # size never stable here), then what each line style means.
        handles = size_handles + [
            Line2D([], [], color="black", marker="o", ms=4, label="measured"),
            Patch(
                color="black", alpha=0.2, lw=0, label=f"{first['confidence']:.0%} Wilson interval"
            ),
            Line2D(
                [],
                [],
                color="black",
                ls="",
                marker="D",
                ms=6,
                mfc="white",
                label="exact: a fixed point",
            ),
            Line2D(
                [],
                [],
                color="black",
                ls="--",
                lw=1.2,
                label=r"exact: fixed for $\sigma \geq \sigma^*(S)$",
            ),
            Line2D([], [], color="black", ls=":", lw=1, label=f"tol = {tol:g}"),
        ]
        if spread_drawn:
            handles.append(Patch(color="black", alpha=0.15, lw=0, label=r"range of $\sigma^*(S)$"))
        fig.legend(handles=handles, loc="outside lower center", ncols=4, fontsize=8, frameon=False)
        left.set_xlim(low, high)
        left.set_ylim(-0.03, 1.08)
        left.set_xlabel(r"noise level $\sigma$ (ramp margin $\rho = \alpha\sigma$)")
        left.set_ylabel("fraction of k-subset sums stable")
        left.grid(alpha=0.3)
        left.set_title("Larger subset sums need a larger σ to stay stable", fontsize=10)
        right.axhline(tol, color="black", ls=":", lw=1)
        right.set_xlim(low, high)
        right.set_xlabel(r"noise level $\sigma$")
        right.set_ylabel(r"median largest drift $\max_t |y^{(t)} - y^{(0)}|_\infty$")
        right.grid(alpha=0.3)
        right.set_title("How far the iterates move (stable: below tol)", fontsize=10)
        unit = edges / np.linalg.norm(edges, axis=1, keepdims=True)
        cosine = (unit @ unit.T)[~np.eye(len(edges), dtype=bool)]
        if len(cosine) == 0:
            spread = "none"
        elif np.ptp(cosine) < 1e-9:
            spread = f"{cosine.min():.3g}"
        else:
            spread = f"{cosine.min():.3g} to {cosine.max():.3g}"
        fig.suptitle(
            f"Obtuse simplex: d = {first['d']}, {first['n']} edges, β = {first['beta']:g} "
            f"(edge cosines {spread}), {first['iterations']} iterations of "
            r"$y \leftarrow h^*_{\alpha\sigma}(y)$",
            fontsize=10,
        )
        return {"stability": fig}

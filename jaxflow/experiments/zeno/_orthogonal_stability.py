r"""The virtual-point stability test on orthogonal data ([Z], Section 6): the closed-form
minimum-norm denoiser against the empirical optimal denoiser."""

import dataclasses
from collections.abc import Mapping
from typing import ClassVar, Literal

import numpy as np
import pyarrow as pa
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ...data import orthogonal
from ...denoisers import EmpiricalOptimal, MinNormOrthogonal
from .. import _plotting as plot
from .._params import param, positive
from .._preset import Arrays, Tabulated
from ._common import float_dtype
from ._stability import _AbstractStability, SIZE_FIELDS, SUMMARY_COLUMNS


Denoiser = Literal["min-norm", "empirical"]

_COLOURS = {"min-norm": "#0072B2", "empirical": "#D55E00"}
_LABELS = {"min-norm": "min-norm closed form", "empirical": "empirical optimal"}


@dataclasses.dataclass(frozen=True)
class OrthogonalStability(_AbstractStability):
    r"""Virtual-point stability on $N$ orthogonal points $x_n = L_n e_n$ ([Z], Section 6,
    the stability experiment with $d = N = 30$): the fixed-point iteration
    $y \leftarrow D(y; \sigma)$ started at every sum of $k$ training points (or a sample
    of `max_subsets` of them), counted stable if it stays within `tol` of its start.

    The closed-form minimum-norm denoiser keeps every subset sum: its range is the
    hyperbox $\{\sum_n a_n x_n : a \in [0, 1]^N\}$, whose vertices are all fixed
    ($\sigma^*(S) = 0$). The empirical optimal denoiser, which memorizes, pulls a sum of
    $k$ points to their centroid at distance $1 - 1/k$ (unit lengths), so none is stable.

    **Cells:** one per denoiser (`denoisers`); each returns every start's largest drift.

    **Rows:** one per denoiser and subset size $k$: the count and fraction stable with
    its Wilson interval, the tolerance, the exact fraction of fixed points and the range
    of $\sigma^*(S)$ (closed form only; empty for the empirical denoiser), and the median
    and largest drift.

    **Figure** `stability.png`: the stable fraction per size and denoiser with its Wilson
    interval and the exact fixed-point fraction, and the distribution of each start's
    largest drift against `tol`.

    !!! note
        It does not show a trained network: [Z] reports that one lies in between (nearly
        all pairs, most triples, a minority of quadruples stable), because its ReLU
        boundaries deviate slightly from the closed form's. Nor does it vary $\sigma$
        (see `obtuse-simplex-stability`).
    """

    name: ClassVar[str] = "orthogonal-stability"
    summary: ClassVar[str] = (
        "[Z] Sec. 6: virtual-point stability of the closed-form min-norm denoiser vs the "
        "empirical optimal denoiser (orthogonal data)"
    )
    schema: ClassVar[pa.Schema] = pa.schema(
        [
            pa.field("d", pa.int64()),
            pa.field("n", pa.int64()),
            pa.field("alpha", pa.float64()),
            pa.field("sigma", pa.float64()),
            pa.field("iterations", pa.int64()),
            pa.field("seed", pa.int64()),
            pa.field("denoiser", pa.string()),
            *SIZE_FIELDS,
        ]
    )
    summary_columns: ClassVar[tuple[str, ...]] = ("denoiser", *SUMMARY_COLUMNS)
    # Each cell is one denoiser's test, whichever others run.
    cell_independent: ClassVar[frozenset[str]] = frozenset({"confidence", "tol", "denoisers"})
    swept: ClassVar[str] = "denoisers"

    sigma: float = param(
        0.05,
        "noise level of the denoisers; the closed form needs sigma < min L / (2 alpha).",
        rule=positive,
    )
    denoisers: tuple[Denoiser, ...] = param(
        ("min-norm", "empirical"),
        "denoisers to test: min-norm (the closed form) and/or empirical (the optimal "
        "denoiser of the training set, which memorizes).",
        distinct=True,
    )

    def noise_levels(self):
        return (self.sigma,) if "min-norm" in self.denoisers else ()

    def cells(self) -> tuple[Denoiser, ...]:
        return self.denoisers

    def cell_name(self, cell: Denoiser) -> str:
        return cell

    def prepare(self, *, progress: bool):
        del progress
        dtype = float_dtype(self.dtype)
        return orthogonal(self.n, self.d, lengths=self.edge_lengths(dtype), dtype=dtype).points

    def compute(self, cell: Denoiser, context) -> dict[str, np.ndarray]:
        points = context
        if cell == "min-norm":
            denoiser = MinNormOrthogonal(points, alpha=self.alpha)
        else:
            denoiser = EmpiricalOptimal(points)
        return self.stability_arrays(denoiser, points, self.sigma)

    def tabulate(self, outputs: Mapping[Denoiser, Arrays]) -> Tabulated:
        config = {
            "d": self.d,
            "n": self.n,
            "alpha": self.closed_form_alpha(),
            "sigma": self.sigma,
            "iterations": self.iterations,
            "seed": self.seed,
        }
        rows, arrays = [], {}
        for name in self.denoisers:
            cell = outputs[name]
            exact = name == "min-norm"
            edges = cell["points"] if exact else None
            rho = self.closed_form_alpha() * self.sigma
            rows += [config | {"denoiser": name} | r for r in self.size_rows(cell, edges, rho)]
            arrays |= {"points": cell["points"], "key": cell["key"]}
            for k in self.sizes:
                arrays[f"{name}_subsets_{k}"] = cell[f"subsets_{k}"]
                arrays[f"{name}_drift_{k}"] = cell[f"drift_{k}"]
        return Tabulated(rows, arrays)

    def figures(self, table: pa.Table, arrays: Mapping[str, np.ndarray]) -> dict[str, Figure]:
        rows = table.to_pylist()
        names = list(dict.fromkeys(r["denoiser"] for r in rows))
        sizes = list(dict.fromkeys(r["size"] for r in rows))
        first = rows[0]
        fig, axes = plot.figure(2, width=5.5, height=4.4)
        width = 0.8 / len(names)

        def offset(j):
            return (j - (len(names) - 1) / 2) * width

        ax = axes[0, 0]
        for j, name in enumerate(names):
            sub = {r["size"]: r for r in rows if r["denoiser"] == name}
            x = np.arange(len(sizes)) + offset(j)
            f = np.array([sub[k]["fraction"] for k in sizes])
            lower = [sub[k]["lower"] for k in sizes]
            upper = [sub[k]["upper"] for k in sizes]
            ax.bar(
                x,
                f,
                width,
                color=_COLOURS[name],
                alpha=0.85,
                yerr=plot.interval_errors(f, lower, upper),
                capsize=4,
            )
            exact = [sub[k]["fixed_fraction"] for k in sizes]
            if exact[0] is not None:
                ax.scatter(
                    x, exact, marker="D", s=36, facecolor="white", edgecolor="black", zorder=3
                )
            for xi, k in zip(x, sizes):
                r = sub[k]
                ax.annotate(
                    f"{plot.percent(r['fraction'])}\n{r['num_stable']:,}/{r['num_subsets']:,}",
                    (xi, r["upper"]),
                    xytext=(0, 3),
                    textcoords="offset points",
                    ha="center",
                    va="bottom",
                    fontsize=7,
                )
        # Every denoiser in the legend, also one whose bars are all empty.
        handles = [Patch(color=_COLOURS[n], alpha=0.85, label=_LABELS[n]) for n in names]
        if "min-norm" in names:
            handles.append(
                Line2D(
                    [],
                    [],
                    marker="D",
                    ls="",
                    mfc="white",
                    mec="black",
                    label="exact: a fixed point",
                )
            )
        ax.set_xticks(np.arange(len(sizes)), [f"k = {k}" for k in sizes])
        ax.set_xlabel("starts: sums of k training points")
        ax.set_ylabel(f"fraction stable ({first['confidence']:.0%} Wilson interval)")
        ax.set_ylim(0, 1.35)
        ax.set_yticks(np.linspace(0, 1, 6))
        ax.grid(axis="y", alpha=0.3)
        ax.legend(
            handles=handles, fontsize=8, frameon=False, loc="upper center", ncols=len(handles)
        )
        ax.set_title("Which subset sums are stable?", fontsize=10)

        ax = axes[0, 1]
        rng = np.random.default_rng(0)  # jitter only, for the picture
        for i, k in enumerate(sizes):
            for j, name in enumerate(names):
                drift = arrays[f"{name}_drift_{k}"]
                shown = drift if drift.size <= 1000 else rng.choice(drift, 1000, replace=False)
                x = i + offset(j)
                ax.scatter(
                    x + rng.uniform(-0.3, 0.3, shown.size) * width,
                    shown,
                    s=4,
                    color=_COLOURS[name],
                    alpha=0.4,
                    lw=0,
                )
                median = next(
                    r["median_drift"] for r in rows if (r["denoiser"], r["size"]) == (name, k)
                )
                ax.plot([x - 0.4 * width, x + 0.4 * width], [median] * 2, color="black", lw=1.5)
        tol = first["tol"]
        ax.axhline(tol, color="black", ls="--", lw=1)
        handles = [Patch(color=_COLOURS[n], alpha=0.6, label=_LABELS[n]) for n in names] + [
            Line2D([], [], color="black", lw=1.5, label="median"),
            Line2D([], [], color="black", ls="--", lw=1, label=f"tol = {tol:g}"),
        ]
        ax.set_xticks(np.arange(len(sizes)), [f"k = {k}" for k in sizes])
        ax.set_xlabel("starts: sums of k training points")
        ax.set_ylabel(r"largest drift $\max_t |y^{(t)} - y^{(0)}|_\infty$")
        ax.legend(handles=handles, fontsize=8, frameon=False, loc="upper left")
        ax.grid(axis="y", alpha=0.3)
        ax.set_title(
            "How far the iterates move (stable: below tol; up to 1000 starts shown)", fontsize=10
        )
        fig.suptitle(
            f"Virtual-point stability, d = {first['d']}, N = {first['n']}, "
            f"$\\sigma$ = {first['sigma']:g}, {first['iterations']} iterations of "
            r"$y \leftarrow D(y; \sigma)$",
            fontsize=10,
        )
        return {"stability": fig}

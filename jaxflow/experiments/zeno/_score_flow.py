"""The score flow of the closed-form minimum-norm denoiser on orthogonal data ([Z],
Sections 4 and 6): where it ends from many random starts."""

import dataclasses
import math
from collections.abc import Mapping
from typing import ClassVar

import jax.numpy as jnp
import numpy as np
import pyarrow as pa
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ...estimators import classify_endpoints
from ...flows import score_flow, score_flow_limit
from .. import _plotting as plot
from .._params import param, positive
from .._preset import Arrays, Footprint, Tabulated
from . import _orthogonal_figures as figs
from ._orthogonal_flows import (
    _AbstractOrthogonalFlow,
    block_size,
    check_orthogonal_flow,
    CLASS_FIELDS,
    class_rows,
    combine,
    config_columns,
    CONFIG_FIELDS,
    firsts,
    INPUTS,
    inputs,
    orthogonal_footprint,
    Setup,
    setup,
    tally_block,
)


# Saved states of each sample trajectory.
_SAVES = 61


@dataclasses.dataclass(frozen=True)
class _Block:
    """The starts `first, ..., first + chunk_size - 1`."""

    first: int


@dataclasses.dataclass(frozen=True)
class _Sample:
    """The first `count` starts' trajectories, saved along the way."""

    count: int


@dataclasses.dataclass(frozen=True)
class OrthogonalScoreFlow(_AbstractOrthogonalFlow):
    r"""The score flow $dy/dt = h^*_\rho(y) - y$ at a fixed noise level $\sigma$,
    $\rho = \alpha\sigma$ ([Z], Section 4), of the closed-form minimum-norm denoiser on
    $N$ orthogonal points, from many Gaussian starts, to time $t_1$. Every endpoint is
    classified ([Z], Section 5) and compared with the exact answer: the coordinates
    decouple, each flat region of a ramp is stable and its midpoint $L_n/2$ unstable, so
    the flow ends at the hyperbox vertex nearest the start,
    $\sum_n [u_n \cdot y_0 \ge L_n/2]\, x_n$.

    [Z] (Section 6) reports that the score flow ends almost always at virtual points:
    from starts spread over the hyperbox each coordinate rounds to 0 or 1 on its own, so a
    vertex with two or more points is overwhelmingly likely. The number $|S|$ of points in
    the vertex is then Poisson-binomial, with success probabilities
    $P(u_n \cdot y_0 \ge L_n/2)$.

    **Cells:** `inputs` (training points, key, start distribution), one per block of
    `chunk_size` starts (`starts<first>`; the last block is padded so that every block
    compiles once), and `trajectories<count>` (the first `trajectories` starts, saved at
    61 times).

    **Rows**, one per endpoint class: the configuration ($d$, $N$, $\alpha$, `tol`, the
    starts, solver, `steps`, $\sigma$, $t_1$, seed); `count`, `total`, `fraction` and its
    Wilson interval `lower`, `upper`; `exact_count`, `exact_fraction` among the exact
    endpoints (the nearest vertices); `agreement`, the fraction of starts whose flow and
    exact endpoints share a class; and `max_error`, the largest $L^\infty$ distance
    between a flow endpoint and its exact endpoint.

    **Figures:** `class_fractions` (each class with its Wilson interval and the exact
    fraction; empty classes as zero bars), `trajectories` (sample trajectories on two
    training directions; every class in the legend) and `vertex_sizes` ($|S|$ of the
    endpoints' vertices against the exact Poisson-binomial distribution).

    !!! note
        What it does not show: the trained networks of [Z]. The closed form is the
        theory's object; its score flow is exactly a rounding of the start, so the class
        fractions follow from the start distribution alone.
    """

    name: ClassVar[str] = "orthogonal-score-flow"
    summary: ClassVar[str] = (
        "[Z] Sec. 6: the score flow of the closed-form min-norm denoiser (orthogonal data) "
        "ends at virtual points; every endpoint checked against the nearest vertex"
    )
    schema: ClassVar[pa.Schema] = pa.schema(
        CONFIG_FIELDS
        + [
            pa.field("steps", pa.int64()),
            pa.field("sigma", pa.float64()),
            pa.field("t1", pa.float64()),
        ]
        + CLASS_FIELDS
    )
    summary_columns: ClassVar[tuple[str, ...]] = (
        "class",
        "count",
        "fraction",
        "lower",
        "upper",
        "exact_fraction",
    )

    sigma: float = param(
        0.05,
        "fixed noise level of the denoiser; the closed form needs 2 * alpha * sigma < "
        "min L_n (sigma < 0.0913 at the defaults).",
        rule=positive,
    )
    t1: float = param(
        30.0,
        "flow time; the slowest starts (nearest a ramp midpoint) need tens of units.",
        rule=positive,
    )
    steps: int = param(
        128, "solver steps (fixed-grid solvers) or first-step hint (tsit5).", rule=positive
    )

    def check(self) -> None:
        check_orthogonal_flow(self, "sigma", (self.sigma,))

    def quick(self) -> "OrthogonalScoreFlow":
        return dataclasses.replace(self, num_starts=2000, chunk_size=800, steps=64, trajectories=30)

    def footprint(self) -> Footprint:
        return orthogonal_footprint(self, 1, _SAVES)

    def cells(self) -> list:
        cells: list = [INPUTS, *(_Block(first) for first in firsts(self))]
        if self.trajectories:
            cells.append(_Sample(self.trajectories))
        return cells

    def cell_name(self, cell) -> str:
        if isinstance(cell, _Block):
            return f"starts{cell.first}"
        if isinstance(cell, _Sample):
            return f"trajectories{cell.count}"
        return cell

    def prepare(self, *, progress: bool) -> Setup:
        del progress
        return setup(self)

    def compute(self, cell, context: Setup) -> Arrays:
        dtype = context.points.dtype
        flow = dict(
            sigma=jnp.asarray(self.sigma, dtype),
            t1=jnp.asarray(self.t1, dtype),
            steps=self.steps,
            solver=self.solver,
        )
        if isinstance(cell, _Block):
            solve = lambda y0: score_flow(context.denoiser, y0, **flow).ys
            exact = lambda y0: score_flow_limit(context.denoiser, y0)
            return tally_block(solve, exact, context, cell.first, block_size(self))
        if isinstance(cell, _Sample):
            sample = context.starts.rows(np.arange(cell.count))
            save_ts = jnp.linspace(0.0, self.t1, _SAVES, dtype=dtype)
            path = score_flow(context.denoiser, sample, save_ts=save_ts, **flow)
            labels = classify_endpoints(path.ys, context.points, context.tol).label
            return {
                "sample_starts": np.asarray(sample),
                "sample_ts": np.asarray(save_ts),
                "sample_trajectories": np.asarray(path.trajectory),
                "sample_endpoints": np.asarray(path.ys),
                "sample_labels": np.asarray(labels).astype(np.int8),
            }
        return inputs(context)

    def tabulate(self, outputs: Mapping) -> Tabulated:
        tally = combine([outputs[_Block(first)] for first in firsts(self)])
        config = config_columns(self) | {"steps": self.steps, "sigma": self.sigma, "t1": self.t1}
        arrays = dict(outputs[INPUTS]) | {
            "labels": tally.labels,
            "exact_labels": tally.exact_labels,
            "vertex_sizes": tally.vertex_sizes,
        }
        if self.trajectories:
            arrays |= outputs[_Sample(self.trajectories)]
        return Tabulated(class_rows(self.confidence, config, tally), arrays)

    def figures(self, table: pa.Table, arrays: Mapping[str, np.ndarray]) -> dict[str, Figure]:
        rows = table.to_pylist()
        points = np.asarray(arrays["points"])
        lengths = np.linalg.norm(points, axis=1)
        figures = {"class_fractions": self._fractions_figure(rows)}
        if "sample_trajectories" in arrays:
            figures["trajectories"] = self._trajectory_figure(
                points, arrays["sample_trajectories"], arrays["sample_labels"]
            )
        figures["vertex_sizes"] = self._sizes_figure(lengths, arrays["vertex_sizes"])
        return figures

    def _title(self) -> str:
        return (
            f"Score flow at $\\sigma$ = {self.sigma:g} to $t$ = {self.t1:g}: "
            f"d = {self.d}, N = {self.n}, "
            f"{self.num_starts:,} {figs.starts_text(self.start_centre, self.start_scale)}"
        )

    def _fractions_figure(self, rows: list[dict]) -> Figure:
        fig, axes = plot.figure(width=7.5, height=4.5)
        plot.class_bars(
            axes[0, 0],
            rows,
            exact_key="exact_fraction",
            exact_label="exact: vertex nearest the start ([Z], Section 4)",
            confidence=self.confidence,
        )
        axes[0, 0].set_title("Where the score flow ends", fontsize=11)
        fig.suptitle(self._title(), fontsize=10)
        return fig

    def _trajectory_figure(self, points: np.ndarray, path: np.ndarray, labels: np.ndarray):
        fig, axes = plot.figure(width=6.0, height=6.2)
        ax = axes[0, 0]
        lengths = np.linalg.norm(points, axis=1)
        figs.hyperbox_square(ax, self.projection, lengths)
        figs.trajectories(ax, self.projection, path, labels, points / lengths[:, None])
        i, j = self.projection
        ax.set_title(
            f"{len(labels)} score-flow trajectories on the face spanned by "
            f"$x_{{{i + 1}}}$, $x_{{{j + 1}}}$",
            fontsize=10,
        )
        fig.suptitle(
            self._title() + f"\ncolour: class of the full endpoint in all {self.d} dimensions",
            fontsize=9,
        )
        figs.trajectory_legend(fig, labels, ramp=False)
        return fig

    def _sizes_figure(self, lengths: np.ndarray, vertex_sizes: np.ndarray) -> Figure:
        fig, axes = plot.figure(width=7.5, height=4.2)
        ax = axes[0, 0]
        sizes = np.arange(self.n + 1)
        fraction = vertex_sizes / self.num_starts
        colours = [
            plot.CLASS_COLOURS["origin" if k == 0 else "training" if k == 1 else "virtual"]
            for k in sizes
        ]
        ax.bar(sizes, fraction, color=colours, alpha=0.85)
        # Each coordinate of a start rounds to 1 independently with probability
        # P(s_n >= L_n / 2), so |S| is Poisson-binomial.
        centre = lengths / 2 if self.start_centre == "box-centre" else np.zeros(self.n)
        z = (centre - lengths / 2) / self.start_scale
        probabilities = 0.5 * (1 + np.vectorize(math.erf)(z / math.sqrt(2)))
        exact = figs.poisson_binomial(probabilities)
        ax.plot(sizes, exact, "D", mfc="white", mec="black", ms=5)
        # Head room for the legend above the bars.
        ax.set_ylim(0, 1.3 * max(np.max(fraction), np.max(exact)))
        # Every class in the legend; one no endpoint reaches is marked "none".
        counts = {
            "origin": vertex_sizes[0],
            "training": vertex_sizes[1],
            "virtual": sum(vertex_sizes[2:]),
        }
        handles = [
            Patch(
                color=plot.CLASS_COLOURS[c],
                alpha=0.85,
                label=f"{k}: {plot.CLASS_LABELS[c]}" + ("" if counts[c] else " (none)"),
            )
            for c, k in (("origin", "|S| = 0"), ("training", "|S| = 1"), ("virtual", "|S| ≥ 2"))
        ]
        handles.append(
            Line2D(
                [],
                [],
                marker="D",
                ls="",
                mfc="white",
                mec="black",
                label="exact: size of the vertex nearest the start",
            )
        )
        ax.legend(
            handles=handles,
            title="endpoints at a vertex",
            title_fontsize=8,
            fontsize=8,
            frameon=False,
            loc="upper left",
            alignment="left",
        )
        ax.set_xlabel("number of training points in the endpoint's vertex, |S|")
        ax.set_ylabel("fraction of endpoints")
        ax.set_xlim(-0.7, self.n + 0.7)
        ax.grid(axis="y", alpha=0.3)
        ax.set_title(
            r"Endpoints are subset sums $\Sigma_{n \in S}\, x_n$: how many points they add up",
            fontsize=11,
        )
        fig.suptitle(self._title(), fontsize=10)
        return fig

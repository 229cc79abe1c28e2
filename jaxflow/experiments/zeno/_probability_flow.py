"""The probability flow of the closed-form minimum-norm denoiser on orthogonal data ([Z],
Sections 4 and 6): where it ends, against the noise level it starts from."""

import dataclasses
import math
from collections.abc import Mapping
from typing import ClassVar, Literal

import jax.numpy as jnp
import numpy as np
import pyarrow as pa
from matplotlib.figure import Figure

from ...estimators import classify_endpoints
from ...flows import exact_probability_flow, probability_flow
from .. import _plotting as plot
from .._params import param, positive
from .._preset import Arrays, Footprint, Tabulated
from . import _orthogonal_figures as figs
from ._common import closed_form_alpha, sigma_limit
from ._orthogonal_flows import (
    _AbstractOrthogonalFlow,
    all_lengths,
    block_size,
    check_orthogonal_flow,
    CLASS_FIELDS,
    class_rows,
    combine,
    config_columns,
    CONFIG_FIELDS,
    COORDINATE_BINS,
    effective_tol,
    firsts,
    INPUTS,
    inputs,
    orthogonal_footprint,
    Setup,
    setup,
    tally_block,
)


# Saved noise levels of each sample trajectory.
_SAVES = 41

_WHY_NO_TRAINING_POINT = (
    "With the closed form each coordinate keeps the region it starts in (flat at 0, ramp, "
    "flat at L; [Z], Section 4): an endpoint is a training point $x_n$ only if coordinate "
    "n starts flat at L and every other one flat at 0."
)


@dataclasses.dataclass(frozen=True)
class _Block:
    """The starts `first, ..., first + chunk_size - 1`, from `sigma_max`."""

    sigma_max: float
    first: int


@dataclasses.dataclass(frozen=True)
class _Sample:
    """The first `count` starts' trajectories from `sigma_max`, saved along the way."""

    sigma_max: float
    count: int


@dataclasses.dataclass(frozen=True)
class OrthogonalProbabilityFlow(_AbstractOrthogonalFlow):
    r"""The probability flow $dx/d\sigma = (x - h^*_{\alpha\sigma}(x)) / \sigma$ from
    $\sigma_{\max}$ down to $\sigma_{\min}$ ([Z], Section 4) of the closed-form
    minimum-norm denoiser on $N$ orthogonal points, from many Gaussian starts, for one or
    several $\sigma_{\max}$ (the same starts for each). Every endpoint is classified ([Z],
    Section 5) and compared with the exact solution: with $s_0 = u_n \cdot y_0$,
    $\rho = \alpha\sigma$ and $q = \sigma_{\min} / \sigma_{\max}$, a coordinate flat at 0
    ($s_0 \le \rho_{\max}$) ends at $s_0 q$, one flat at $L_n$
    ($s_0 \ge L_n - \rho_{\max}$) at $L_n + (s_0 - L_n) q$, and one on the ramp at
    $L_n/2 + (s_0 - L_n/2)(L_n - 2\rho_{\min}) / (L_n - 2\rho_{\max})$.

    What it shows is the theorem on early and late starts: each coordinate keeps the
    region it starts in, so starting early (large $\sigma_{\max}$, wide flat regions)
    sends the flow to vertices, and starting late leaves it on the hyperbox's boundary
    between vertices (manifold points) or inside.

    !!! note
        What it does not show: memorization. From the default starts
        $\mathcal{N}(\sum_n x_n / 2, 0.3^2 I)$ no flow ends at a training point, at any
        $\sigma_{\max}$ (0% memorization): a training point $x_n$ needs coordinate $n$ to
        start flat at $L_n$ and all $N - 1$ others flat at 0, and around the box centre
        that is vanishingly rare. The vertices reached are virtual points. [Z] (Section 6)
        reports probability-flow endpoints at training points for trained networks; the
        closed form from these starts does not reproduce that.

    *Choice* (the papers leave it open): the textbook start
    $\mathcal{N}(0, \sigma_{\max}^2 I)$ is no use here: the closed form needs
    $\sigma_{\max} < \min_n L_n / (2\alpha)$ (0.0913 at the defaults), so every coordinate
    would start flat at 0 and every flow would end at the origin.

    **Cells:** `inputs` (training points, key, start distribution); for each
    $\sigma_{\max}$, one per block of `chunk_size` starts
    (`sigma_max<value>_starts<first>`; the last block is padded so that every block
    compiles once) and `sigma_max<value>_trajectories<count>` (the first `trajectories`
    starts, saved at 41 noise levels).

    **Rows**, one per $\sigma_{\max}$ and endpoint class: the configuration ($d$, $N$,
    $\alpha$, `tol`, the starts, solver, `steps`, schedule, $\sigma_{\max}$,
    $\sigma_{\min}$, seed); `count`, `total`, `fraction` and its Wilson interval `lower`,
    `upper`; `exact_count`, `exact_fraction` among the exact endpoints; `agreement`, the
    fraction of starts whose flow and exact endpoints share a class; and `max_error`, the
    largest $L^\infty$ distance between a flow endpoint and its exact endpoint.

    **Figures:** `class_fractions` (each class's fraction against $\sigma_{\max}$ with its
    Wilson interval and the exact fraction; every class kept, the empty ones as flat
    zero lines marked "none"), `trajectories` (sample trajectories on two training
    directions, one panel per $\sigma_{\max}$) and `coordinates` (the distribution of the
    endpoints' hyperbox coordinates).
    """

    name: ClassVar[str] = "orthogonal-probability-flow"
    summary: ClassVar[str] = (
        "[Z] Sec. 4: probability-flow endpoint classes of the closed-form min-norm denoiser "
        "(orthogonal data) against sigma_max, checked against the exact solution; from the "
        "default starts no endpoint is a training point"
    )
    schema: ClassVar[pa.Schema] = pa.schema(
        CONFIG_FIELDS
        + [
            pa.field("steps", pa.int64()),
            pa.field("schedule", pa.string()),
            pa.field("sigma_max", pa.float64()),
            pa.field("sigma_min", pa.float64()),
        ]
        + CLASS_FIELDS
    )
    summary_columns: ClassVar[tuple[str, ...]] = (
        "sigma_max",
        "class",
        "count",
        "fraction",
        "lower",
        "upper",
        "exact_fraction",
    )

    sigma_max: tuple[float, ...] = param(
        (0.02, 0.04, 0.06, 0.08, 0.085, 0.09),
        "starting noise level(s), a comma-separated sweep run on the same starts; the closed "
        "form needs 2 * alpha * sigma_max < min L_n (sigma_max < 0.0913 at the defaults).",
        rule=positive,
        distinct=True,
    )
    sigma_min: float = param(1e-3, "final noise level, below every sigma_max.", rule=positive)
    steps: int = param(
        64,
        "solver steps on the schedule's grid (fixed-grid solvers) or first-step hint (tsit5).",
        rule=positive,
    )
    schedule: Literal["geometric", "karras"] = param(
        "geometric", "noise-level grid of the fixed-grid solvers."
    )

    def check(self) -> None:
        check_orthogonal_flow(self, "sigma_max", self.sigma_max)
        if self.sigma_min >= min(self.sigma_max):
            raise ValueError(
                f"sigma_min={self.sigma_min:g}: must lie below every sigma_max "
                f"(the smallest is {min(self.sigma_max):g})."
            )

    def quick(self) -> "OrthogonalProbabilityFlow":
        return dataclasses.replace(self, num_starts=2000, chunk_size=800, steps=32, trajectories=30)

    def footprint(self) -> Footprint:
        need = orthogonal_footprint(self, len(self.sigma_max), _SAVES)
        return dataclasses.replace(need, set_by=need.set_by + ("sigma_max",))

    def cells(self) -> list:
        cells: list = [INPUTS]
        for value in self.sigma_max:
            cells += [_Block(value, first) for first in firsts(self)]
            if self.trajectories:
                cells.append(_Sample(value, self.trajectories))
        return cells

    def cell_name(self, cell) -> str:
        if isinstance(cell, _Block):
            return f"sigma_max{cell.sigma_max!r}_starts{cell.first}"
        if isinstance(cell, _Sample):
            return f"sigma_max{cell.sigma_max!r}_trajectories{cell.count}"
        return cell

    def prepare(self, *, progress: bool) -> Setup:
        del progress
        return setup(self)

    def compute(self, cell, context: Setup) -> Arrays:
        if cell == INPUTS:
            return inputs(context)
        dtype = context.points.dtype
        # Traced scalars: the sweep over sigma_max compiles once.
        sigma_max = jnp.asarray(cell.sigma_max, dtype)
        sigma_min = jnp.asarray(self.sigma_min, dtype)
        options = dict(
            sigma_max=sigma_max,
            sigma_min=sigma_min,
            steps=self.steps,
            solver=self.solver,
            schedule=self.schedule,
        )
        if isinstance(cell, _Block):
            solve = lambda y0: probability_flow(context.denoiser, y0, **options).ys
            exact = lambda y0: exact_probability_flow(
                context.denoiser, y0, sigma_max=sigma_max, sigma_min=sigma_min
            )
            return tally_block(solve, exact, context, cell.first, block_size(self))
        sample = context.starts.rows(np.arange(cell.count))
        # Pin the ends: geomspace's power rounds them out of [sigma_min, sigma_max].
        levels = jnp.geomspace(sigma_max, sigma_min, _SAVES, dtype=dtype)
        levels = levels.at[0].set(sigma_max).at[-1].set(sigma_min)
        path = probability_flow(context.denoiser, sample, save_sigmas=levels, **options)
        labels = classify_endpoints(path.ys, context.points, context.tol).label
        return {
            "sample_starts": np.asarray(sample),
            "sample_sigmas": np.asarray(levels),
            "sample_trajectories": np.asarray(path.trajectory),
            "sample_endpoints": np.asarray(path.ys),
            "sample_labels": np.asarray(labels).astype(np.int8),
        }

    def tabulate(self, outputs: Mapping) -> Tabulated:
        rows, tallies = [], []
        for value in self.sigma_max:
            tally = combine([outputs[_Block(value, first)] for first in firsts(self)])
            tallies.append(tally)
            config = config_columns(self) | {
                "steps": self.steps,
                "schedule": self.schedule,
                "sigma_max": value,
                "sigma_min": self.sigma_min,
            }
            rows += class_rows(self.confidence, config, tally)
        stack = lambda xs: np.stack([np.asarray(x) for x in xs])
        arrays = dict(outputs[INPUTS]) | {
            "sigma_max": np.asarray(self.sigma_max),
            "labels": stack(t.labels for t in tallies),
            "exact_labels": stack(t.exact_labels for t in tallies),
            "vertex_sizes": stack(t.vertex_sizes for t in tallies),
            "coordinate_bins": COORDINATE_BINS,
            "coordinate_counts": stack(t.coordinates for t in tallies),
            # The same starts for every sigma_max.
            "start_coordinate_counts": tallies[0].start_coordinates,
        }
        if self.trajectories:
            samples = [outputs[_Sample(value, self.trajectories)] for value in self.sigma_max]
            arrays |= {
                "sample_starts": samples[0]["sample_starts"],
                **{
                    key: stack(s[key] for s in samples)
                    for key in (
                        "sample_sigmas",
                        "sample_trajectories",
                        "sample_endpoints",
                        "sample_labels",
                    )
                },
            }
        return Tabulated(rows, arrays)

    def figures(self, table: pa.Table, arrays: Mapping[str, np.ndarray]) -> dict[str, Figure]:
        rows = table.to_pylist()
        points = np.asarray(arrays["points"])
        figures = {"class_fractions": self._fractions_figure(rows)}
        if "sample_trajectories" in arrays:
            figures["trajectories"] = self._trajectory_figure(
                points, arrays["sample_trajectories"], arrays["sample_labels"]
            )
        figures["coordinates"] = self._coordinates_figure(
            points,
            arrays["coordinate_bins"],
            arrays["coordinate_counts"],
            arrays["start_coordinate_counts"],
        )
        return figures

    def _title(self) -> str:
        return (
            f"Probability flow to $\\sigma_{{\\min}}$ = {self.sigma_min:g} "
            f"({self.solver}, {self.steps} steps, {self.schedule}): d = {self.d}, N = {self.n}, "
            f"{self.num_starts:,} {figs.starts_text(self.start_centre, self.start_scale)}"
        )

    def _memorization(self, rows: list[dict]) -> str:
        """What the rows say about training-point endpoints, in words."""
        training = [r for r in rows if r["class"] == "training"]
        if not any(r["count"] for r in training):
            where = "at any $\\sigma_{\\max}$" if len(training) > 1 else ""
            return f"no endpoint is a training point {where} (0% memorization)".replace("  ", " ")
        top = max(training, key=lambda r: r["fraction"])
        return (
            f"training points (memorization): at most {plot.percent(top['fraction'])}, "
            f"at $\\sigma_{{\\max}}$ = {top['sigma_max']:g}"
        )

    def _fractions_figure(self, rows: list[dict]) -> Figure:
        exact_label = "exact closed-form solution ([Z], Section 4)"
        if len(self.sigma_max) == 1:
            fig, axes = plot.figure(width=7.5, height=4.5)
            plot.class_bars(
                axes[0, 0],
                rows,
                exact_key="exact_fraction",
                exact_label=exact_label,
                confidence=self.confidence,
            )
            axes[0, 0].set_title(
                f"Where the probability flow from $\\sigma_{{\\max}}$ = {self.sigma_max[0]:g} "
                f"ends: {self._memorization(rows)}",
                fontsize=10,
            )
        else:
            fig, axes = plot.figure(width=8.0, height=4.8)
            ax = axes[0, 0]
            plot.class_curves(
                ax,
                rows,
                "sigma_max",
                exact_key="exact_fraction",
                exact_label=exact_label,
                confidence=self.confidence,
                hide_empty=False,
            )
            limit = sigma_limit(self.d, all_lengths(self), self.alpha)
            ax.axvline(limit, color="black", ls="--", lw=0.8)
            ax.annotate(
                r"closed-form limit $\min_n L_n / (2\alpha)$",
                (limit, 0.5),
                xytext=(3, 0),
                textcoords="offset points",
                rotation=90,
                ha="left",
                va="center",
                fontsize=8,
            )
            low = min(self.sigma_max)
            ax.set_xlim(low - 0.05 * (limit - low), limit + 0.08 * (limit - low))
            ax.set_xlabel(
                r"$\sigma_{\max}$, the noise level the flow starts from (larger = earlier)"
            )
            ax.set_title(
                "Starting early sends the flow to vertices; starting late leaves it on the "
                f"boundary;\n{self._memorization(rows)}",
                fontsize=10,
            )
            ax.legend(fontsize=8, frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
        fig.suptitle(self._title(), fontsize=9)
        fig.supxlabel(_WHY_NO_TRAINING_POINT, fontsize=8, wrap=True)
        return fig

    def _trajectory_figure(self, points: np.ndarray, paths: np.ndarray, labels: np.ndarray):
        count = len(paths)
        ncols = min(count, 3)
        nrows = math.ceil(count / ncols)
        fig, axes = plot.figure(ncols, nrows, width=4.3, height=4.6, sharex=True, sharey=True)
        lengths = np.linalg.norm(points, axis=1)
        units = points / lengths[:, None]
        alpha = closed_form_alpha(self.d, self.alpha)
        for ax, value, path, label in zip(axes.flat, self.sigma_max, paths, labels):
            figs.hyperbox_square(ax, self.projection, lengths, rho=alpha * value)
            figs.trajectories(ax, self.projection, path, label, units)
            ax.set_title(
                f"$\\sigma_{{\\max}}$ = {value:g}  "
                f"($\\rho_{{\\max}} = \\alpha\\sigma_{{\\max}}$ = {alpha * value:.3g})",
                fontsize=10,
            )
            ax.label_outer()
        for ax in axes.flat[count:]:
            ax.set_axis_off()
        i, j = self.projection
        fig.suptitle(
            self._title() + f"\n{labels.shape[1]} trajectories projected on "
            f"$x_{{{i + 1}}}$, $x_{{{j + 1}}}$; colour: class of the full endpoint in all "
            f"{self.d} dimensions",
            fontsize=9,
        )
        figs.trajectory_legend(fig, np.ravel(labels), ramp=True)
        return fig

    def _coordinates_figure(
        self, points: np.ndarray, bins: np.ndarray, counts: np.ndarray, start_counts: np.ndarray
    ) -> Figure:
        fig, axes = plot.figure(width=8.0, height=4.5)
        ax = axes[0, 0]
        width = np.diff(bins)
        centres = bins[:-1] + width / 2
        total = self.num_starts * self.n
        ax.plot(
            centres, start_counts / (total * width), color="black", ls="--", lw=1, label="starts"
        )
        cmap = plot.colormap("viridis")
        for k, (value, count) in enumerate(zip(self.sigma_max, counts)):
            ax.stairs(
                count / (total * width),
                bins,
                color=cmap(k / max(len(counts) - 1, 1)),
                lw=1.3,
                label=f"endpoints, $\\sigma_{{\\max}}$ = {value:g}",
            )
        shortest = float(np.min(np.linalg.norm(points, axis=1)))
        band = effective_tol(self) / shortest
        for face in (0.0, 1.0):
            ax.axvspan(face - band, face + band, color="grey", alpha=0.15, lw=0)
        ax.plot([], [], color="grey", alpha=0.3, lw=6, label="within tol of a face")
        ax.set_yscale("log")
        ax.set_xlim(bins[0], bins[-1])
        ax.set_xlabel(r"hyperbox coordinate $\alpha_n = u_n \cdot y / L_n$ (all n pooled)")
        ax.set_ylabel("density")
        ax.set_title(
            "Flat coordinates collapse onto a face (0 or 1); ramp coordinates stay inside",
            fontsize=10,
        )
        ax.legend(fontsize=8, frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
        ax.grid(alpha=0.3)
        fig.suptitle(self._title(), fontsize=9)
        return fig

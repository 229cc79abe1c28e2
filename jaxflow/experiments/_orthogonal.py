"""Presets for the flows of [Z] on orthogonal training points (SCIENCE.md Z3-Z5, Z6.2):
the score flow and the probability flow of the closed-form minimum-norm denoiser from
many random starts, with the class of every endpoint and the exact answer beside it."""

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar, Literal, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, Float
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from tqdm.auto import tqdm

from ..data import GaussianStarts, orthogonal
from ..denoisers import MinNormOrthogonal
from ..estimators import class_fractions, classify_endpoints, EndpointClass
from ..flows import exact_probability_flow, probability_flow, score_flow, score_flow_limit
from . import _plotting as plot
from ._base import AbstractPreset, param, Results
from ._pieces import Pieces
from ._registry import register


# Hyperbox coordinates are histogrammed on this grid (values outside it are not counted).
_COORDINATE_BINS = np.linspace(-0.5, 1.5, 201)


# --------------------------------------------------------------------------------------
# Shared set-up, validation and the block loop.


def _check_common(p) -> None:
    """Refuse parameters that break the data, the closed form or the sampling; run from
    `__post_init__`, so that `--set` reports them in one line."""
    if not 2 <= p.n <= p.d:
        raise ValueError(
            f"need 2 <= n <= d (n orthogonal points in d dimensions), got n={p.n}, d={p.d}."
        )
    if len(p.lengths) not in (1, p.n) or min(p.lengths) <= 0:
        raise ValueError(f"lengths must be positive, one value or n={p.n} values; got {p.lengths}.")
    if p.alpha is not None and p.alpha <= 0:
        raise ValueError(f"alpha must be positive, got {p.alpha}.")
    if p.num_starts < 1 or p.chunk_size < 1 or p.steps < 1:
        raise ValueError("num_starts, chunk_size and steps must be positive integers.")
    if p.start_scale <= 0:
        raise ValueError(f"start_scale must be positive, got {p.start_scale}.")
    if p.tol is not None and p.tol <= 0:
        raise ValueError(f"tol must be positive or none, got {p.tol}.")
    if not 0 < p.confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {p.confidence}.")
    if not 0 <= p.trajectories <= p.num_starts:
        raise ValueError(f"trajectories must lie in [0, num_starts], got {p.trajectories}.")
    if (
        len(p.projection) != 2
        or len(set(p.projection)) != 2
        or not all(0 <= i < p.n for i in p.projection)
    ):
        raise ValueError(
            f"projection must name two different training directions in [0, {p.n - 1}], "
            f"got {p.projection}."
        )


def _alpha(p) -> float:
    """The closed form's alpha: the preset's, or sqrt(d) (SCIENCE.md Z1)."""
    return math.sqrt(p.d) if p.alpha is None else p.alpha


def _sigma_limit(p) -> float:
    """The closed form's largest noise level (exclusive): $\\min_n L_n / (2\\alpha)$."""
    return min(p.lengths) / (2 * _alpha(p))


def _check_sigma(p, name: str, values: tuple[float, ...]) -> None:
    limit = _sigma_limit(p)
    bad = [s for s in values if not 0 < s < limit]
    if bad:
        raise ValueError(
            f"{name}={bad[0]:g} is outside the closed form's range: it needs "
            f"0 < {name} < min(L) / (2 alpha) = {limit:.4g} (alpha = {_alpha(p):.4g})."
        )


def _dtype(name: str):
    """The preset's dtype, refusing float64 when JAX would silently compute in float32."""
    if name == "float64" and not jax.config.read("jax_enable_x64"):
        raise RuntimeError(
            "dtype=float64 needs double precision: call "
            "jax.config.update('jax_enable_x64', True) first (the CLI does), or set dtype=float32."
        )
    return jnp.dtype(name)


class _Setup(NamedTuple):
    points: Float[Array, "n d"]
    lengths: np.ndarray
    denoiser: MinNormOrthogonal
    key: Array
    starts: GaussianStarts
    tol: Float[Array, ""] | None


def _setup(p) -> _Setup:
    dtype = _dtype(p.dtype)
    lengths = p.lengths[0] if len(p.lengths) == 1 else jnp.asarray(p.lengths, dtype)
    points = orthogonal(p.n, p.d, lengths=lengths, dtype=dtype).points
    denoiser = MinNormOrthogonal(points, alpha=p.alpha)
    key = jr.key(p.seed)
    # The hyperbox centre sum_n x_n / 2 puts every coordinate of a start near a ramp's
    # unstable midpoint, so that no vertex is favoured; the origin is the usual noise mean.
    centre = (
        0.5 * jnp.sum(points, axis=0) if p.start_centre == "box-centre" else jnp.zeros(p.d, dtype)
    )
    starts = GaussianStarts(centre, p.start_scale, num_starts=p.num_starts, key=key)
    tol = None if p.tol is None else jnp.asarray(p.tol, dtype)
    return _Setup(points, np.linalg.norm(np.asarray(points), axis=1), denoiser, key, starts, tol)


def _block(starts: GaussianStarts, first: int, size: int) -> tuple[Array, int]:
    """The block of `size` starts from `first` (the last one padded by repeating its final
    start, so that every block has one shape and the flow compiles once) and how many
    rows to keep."""
    index = np.minimum(np.arange(first, first + size), starts.num_starts - 1)
    return starts.rows(index), min(size, starts.num_starts - first)


class _Tally(NamedTuple):
    labels: np.ndarray  # (num,) int8, the class of each flow endpoint
    exact_labels: np.ndarray  # (num,) int8, the class of each exact endpoint
    max_error: float  # max L-infinity distance between flow and exact endpoints
    vertex_sizes: np.ndarray  # (n + 1,) counts of |S| for endpoints within tol of a vertex
    coordinates: np.ndarray  # (bins,) counts of the endpoints' hyperbox coordinates
    start_coordinates: np.ndarray  # (bins,) counts of the starts' hyperbox coordinates


def _tally(
    solve: Callable[[Array], Array],
    exact: Callable[[Array], Array],
    setup: _Setup,
    size: int,
    bar: tqdm,
    pieces: Pieces,
    tag: str,
) -> _Tally:
    """Run the flow over every start, block by block, keeping only per-start labels and
    histograms: memory is bounded by the block size, not by `num_starts`. Each finished
    block is a piece `{tag}_starts{first}`, so that a stopped run resumes."""
    points, lengths = setup.points, setup.lengths
    units = np.asarray(points) / lengths[:, None]
    bins = _COORDINATE_BINS

    def histogram(y):
        alpha = (y @ units.T / lengths).ravel()
        return np.histogram(alpha, bins)[0]  # values outside the grid are left out

    def block(first):
        y0, keep = _block(setup.starts, first, size)
        ys, ye = solve(y0), exact(y0)
        flow_classes = classify_endpoints(ys, points, setup.tol)
        exact_classes = classify_endpoints(ye, points, setup.tol)
        ys, ye, y0 = (np.asarray(a)[:keep] for a in (ys, ye, y0))
        label = np.asarray(flow_classes.label)[:keep].astype(np.int8)
        at_vertex = label <= EndpointClass.ORIGIN  # TRAINING, VIRTUAL or ORIGIN
        size_of = np.asarray(flow_classes.vertex)[:keep].sum(axis=1)
        return _Tally(
            label,
            np.asarray(exact_classes.label)[:keep].astype(np.int8),
            np.max(np.abs(ys - ye)),
            np.bincount(size_of[at_vertex], minlength=points.shape[0] + 1),
            histogram(ys),
            histogram(y0),
        )._asdict()

    parts = []
    for first in range(0, setup.starts.num_starts, size):
        parts.append(_Tally(**pieces(f"{tag}_starts{first}", lambda: block(first))))
        bar.update(len(parts[-1].labels))
    return _Tally(
        np.concatenate([t.labels for t in parts]),
        np.concatenate([t.exact_labels for t in parts]),
        float(max(t.max_error for t in parts)),
        sum(t.vertex_sizes for t in parts),
        sum(t.coordinates for t in parts),
        sum(t.start_coordinates for t in parts),
    )


# One compilation instead of one per eager operation.
_class_fractions = eqx.filter_jit(class_fractions)


def _class_rows(p, config: dict, tally: _Tally) -> list[dict]:
    """One row per endpoint class: the config, the count and fraction with its Wilson
    interval, the fraction among the exact endpoints, and the per-config agreement."""
    flow = _class_fractions(jnp.asarray(tally.labels, jnp.int32), confidence=p.confidence)
    exact = _class_fractions(jnp.asarray(tally.exact_labels, jnp.int32), confidence=p.confidence)
    agreement = float(np.mean(tally.labels == tally.exact_labels))
    rows = []
    for row, exact_row in zip(flow.rows(), exact.rows()):
        rows.append(
            config
            | row
            | {
                "exact_fraction": exact_row["fraction"],
                "agreement": agreement,
                "max_error": tally.max_error,
            }
        )
    return rows


def _common_config(p) -> dict:
    return {
        "d": p.d,
        "n": p.n,
        "alpha": _alpha(p),
        "start_centre": p.start_centre,
        "start_scale": p.start_scale,
        "solver": p.solver,
        "steps": p.steps,
        "seed": p.seed,
    }


# --------------------------------------------------------------------------------------
# Figures.


def _hyperbox_square(ax: Axes, p, lengths: np.ndarray, rho: float | None = None) -> None:
    """The hyperbox's face spanned by the two projection directions, with its vertices;
    optionally the ramp edges $\\rho$ and $L - \\rho$ of the closed form."""
    i, j = p.projection
    li, lj = lengths[i], lengths[j]
    ax.plot([0, li, li, 0, 0], [0, 0, lj, lj, 0], color="black", lw=1.2, zorder=2)
    names = {
        (0, 0): "0",
        (1, 0): f"$x_{{{i + 1}}}$",
        (0, 1): f"$x_{{{j + 1}}}$",
        (1, 1): f"$x_{{{i + 1}}} + x_{{{j + 1}}}$",
    }
    for (a, b), name in names.items():
        ax.scatter([a * li], [b * lj], marker="s", s=30, color="black", zorder=4)
        ax.annotate(
            name,
            (a * li, b * lj),
            xytext=(-6 if a == 0 else 6, -10 if b == 0 else 6),
            textcoords="offset points",
            ha="right" if a == 0 else "left",
            fontsize=9,
        )
    if rho is not None:
        for value in (rho, li - rho):
            ax.axvline(value, color="grey", ls="--", lw=0.7, zorder=1)
        for value in (rho, lj - rho):
            ax.axhline(value, color="grey", ls="--", lw=0.7, zorder=1)


def _trajectories(ax: Axes, p, path: np.ndarray, labels: np.ndarray, units: np.ndarray) -> None:
    """Sample trajectories projected on $u_i, u_j$, coloured by their endpoint's class."""
    i, j = p.projection
    xy = path @ units[[i, j]].T  # (trajectories, save, 2)
    for track, label in zip(xy, labels):
        colour = plot.CLASS_COLOURS[EndpointClass(int(label)).name.lower()]
        ax.plot(track[:, 0], track[:, 1], color=colour, lw=0.9, alpha=0.7, zorder=3)
    colours = [plot.CLASS_COLOURS[EndpointClass(int(c)).name.lower()] for c in labels]
    ax.scatter(
        xy[:, 0, 0], xy[:, 0, 1], s=10, facecolor="none", edgecolor="black", lw=0.6, zorder=3
    )
    ax.scatter(xy[:, -1, 0], xy[:, -1, 1], s=18, c=colours, edgecolor="black", lw=0.4, zorder=5)
    ax.set_aspect("equal")
    ax.set_xlabel(f"$u_{{{i + 1}}} \\cdot y$")
    ax.set_ylabel(f"$u_{{{j + 1}}} \\cdot y$")


def _trajectory_legend(fig, labels: np.ndarray, *, ramp: bool) -> None:
    handles = []
    for c in EndpointClass:
        if np.any(labels == c):
            name = c.name.lower()
            handles.append(
                Line2D(
                    [],
                    [],
                    color=plot.CLASS_COLOURS[name],
                    lw=2,
                    label={"origin": "ends at the origin", "other": "ends elsewhere (other)"}.get(
                        name, f"ends at a {plot.CLASS_LABELS[name]}"
                    ),
                )
            )
    handles.append(Line2D([], [], marker="o", ls="", mfc="none", mec="black", ms=4, label="start"))
    handles.append(
        Line2D([], [], marker="o", ls="", mfc="grey", mec="black", ms=5, label="endpoint")
    )
    handles.append(Line2D([], [], marker="s", ls="", color="black", ms=5, label="hyperbox vertex"))
    if ramp:
        handles.append(
            Line2D(
                [],
                [],
                color="grey",
                ls="--",
                lw=0.7,
                label=r"ramp edges $\rho_{\max}$, $L - \rho_{\max}$",
            )
        )
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncols=min(len(handles), 4),
        fontsize=8,
        frameon=False,
    )


def _starts_text(p) -> str:
    centre = r"\Sigma_n x_n / 2" if p.start_centre == "box-centre" else "0"
    return f"starts $\\sim \\mathcal{{N}}({centre},\\ {p.start_scale:g}^2 I)$"


def _poisson_binomial(probabilities: np.ndarray) -> np.ndarray:
    pmf = np.array([1.0])
    for q in probabilities:
        pmf = np.convolve(pmf, [1 - q, q])
    return pmf


# --------------------------------------------------------------------------------------
# Presets.


_HELP = {
    "d": "dimension d of the space.",
    "n": "number N of orthogonal training points x_n = L_n e_n (2 <= N <= d).",
    "lengths": "the lengths L_n = |x_n|: one value for every point, or N comma-separated values.",
    "alpha": "noise-ball radius rho = alpha * sigma of the closed form (SCIENCE.md Z1); none "
    "means sqrt(d).",
    "num_starts": "number of random starts (independent flows).",
    "start_centre": "mean of the Gaussian starts: box-centre = sum_n x_n / 2 (every coordinate "
    "at its ramp's midpoint, no vertex favoured) or origin.",
    "start_scale": "standard deviation of the Gaussian starts, per coordinate.",
    "tol": "L-infinity tolerance of the endpoint classes; none means 0.2 * min L_n (Z5).",
    "confidence": "confidence level of the Wilson intervals.",
    "chunk_size": "starts per block: memory is bounded by the block, not by num_starts.",
    "trajectories": "number of sample trajectories saved and drawn (the first starts).",
    "projection": "the two training directions (0-based) on which trajectories are drawn.",
    "dtype": "floating dtype of the computation.",
}


@dataclasses.dataclass(frozen=True)
class _OrthogonalFlow(AbstractPreset):
    """The data, the starts, the solver and the tally settings that the orthogonal flow
    presets share."""

    piece_independent: ClassVar[tuple[str, ...]] = ("confidence", "trajectories", "projection")

    d: int = param(30, _HELP["d"])
    n: int = param(30, _HELP["n"])
    lengths: tuple[float, ...] = param((1.0,), _HELP["lengths"])
    alpha: float | None = param(None, _HELP["alpha"])
    solver: Literal["euler", "heun", "tsit5"] = param("heun", "ODE solver.")
    num_starts: int = param(100_000, _HELP["num_starts"])
    start_centre: Literal["box-centre", "origin"] = param("box-centre", _HELP["start_centre"])
    start_scale: float = param(0.3, _HELP["start_scale"])
    tol: float | None = param(None, _HELP["tol"])
    confidence: float = param(0.95, _HELP["confidence"])
    chunk_size: int = param(2**15, _HELP["chunk_size"])
    trajectories: int = param(50, _HELP["trajectories"])
    projection: tuple[int, ...] = param((0, 1), _HELP["projection"])
    dtype: Literal["float32", "float64"] = param("float64", _HELP["dtype"])


@register
@dataclasses.dataclass(frozen=True)
class OrthogonalScoreFlow(_OrthogonalFlow):
    r"""The score flow $dy/dt = h^*_\rho(y) - y$ at a fixed noise level (SCIENCE.md Z3,
    Z6.2) of the closed-form minimum-norm denoiser on $N$ orthogonal points, from many
    Gaussian starts. Every endpoint is classified (Z5) and compared with the exact
    answer, the hyperbox vertex nearest the start. [Z] reports that the score flow ends
    almost always at virtual points: from starts spread over the hyperbox, each
    coordinate rounds to 0 or 1 independently, so a vertex with two or more points is
    overwhelmingly likely.

    *Choice* (the papers leave it open): the starts are Gaussian,
    $y_0 \sim \mathcal{N}(c, s^2 I)$, with $c = \sum_n x_n / 2$ the hyperbox centre
    (`start_centre=box-centre`: every coordinate at its ramp's unstable midpoint, so no
    vertex is favoured) or $c = 0$ (`origin`), and $s$ = `start_scale` (default 0.3).
    Start $i$ is drawn from `fold_in(key(seed), i)`, whatever the block size, so any start
    can be recomputed from `arrays.npz` (`key`, `start_centre`, `start_scale`).

    **Rows**, one per endpoint class: the configuration; `count`, `total`, `fraction` and
    its Wilson interval `lower`, `upper`; `exact_fraction`, the class's fraction among the
    exact endpoints (the nearest vertices); `agreement`, the fraction of starts whose flow
    and exact endpoints share a class; and `max_error`, the largest $L^\infty$ distance
    between a flow endpoint and its exact endpoint.

    Writes `class_fractions.png` (each class with its Wilson interval and the exact
    fraction), `trajectories.png` (sample trajectories on two training directions) and
    `vertex_sizes.png` (the number of training points in the endpoints' vertices, against
    the exact distribution).
    """

    name: ClassVar[str] = "orthogonal-score-flow"
    summary: ClassVar[str] = (
        "Z6.2: score flow of the closed-form min-norm denoiser (orthogonal data) ends at "
        "virtual points"
    )

    sigma: float = param(
        0.05,
        "fixed noise level of the denoiser; the closed form needs 2 * alpha * sigma < "
        "min L_n (sigma < 0.0913 at the defaults).",
    )
    t1: float = param(
        30.0, "flow time; the slowest starts (nearest a ramp midpoint) need tens of units."
    )
    steps: int = param(128, "solver steps (fixed-grid solvers) or first-step hint (tsit5).")

    def __post_init__(self):
        _check_common(self)
        _check_sigma(self, "sigma", (self.sigma,))
        if self.t1 <= 0:
            raise ValueError(f"t1 must be positive, got {self.t1}.")

    def quick(self) -> "OrthogonalScoreFlow":
        return dataclasses.replace(self, num_starts=2000, steps=64, trajectories=30)

    def run(self, out: Path, *, progress: bool = True) -> Results:
        setup = _setup(self)
        dtype = setup.points.dtype
        sigma, t1 = jnp.asarray(self.sigma, dtype), jnp.asarray(self.t1, dtype)
        flow = dict(sigma=sigma, t1=t1, steps=self.steps, solver=self.solver)
        solve = lambda y0: score_flow(setup.denoiser, y0, **flow).ys
        exact = lambda y0: score_flow_limit(setup.denoiser, y0)

        size = min(self.chunk_size, self.num_starts)
        with tqdm(
            total=self.num_starts, desc="score flow", unit="start", disable=not progress
        ) as bar:
            tally = _tally(solve, exact, setup, size, bar, Pieces(out, self), "score")
        config = _common_config(self) | {"sigma": self.sigma, "t1": self.t1}
        rows = _class_rows(self, config, tally)

        figures = {"class_fractions": self._fractions_figure(rows)}
        arrays = {
            "points": setup.points,
            "key": jr.key_data(setup.key),
            "start_centre": setup.starts.centre,
            "start_scale": setup.starts.scale,
            "labels": tally.labels,
            "exact_labels": tally.exact_labels,
            "vertex_sizes": tally.vertex_sizes,
        }
        if self.trajectories:
            # A few trajectories, saved along the way, for the picture.
            sample = setup.starts.rows(np.arange(self.trajectories))
            save_ts = jnp.linspace(0.0, self.t1, 61, dtype=dtype)
            path = score_flow(setup.denoiser, sample, save_ts=save_ts, **flow)
            labels = np.asarray(classify_endpoints(path.ys, setup.points, setup.tol).label)
            figures["trajectories"] = self._trajectory_figure(
                setup, np.asarray(path.trajectory), labels
            )
            arrays |= {
                "sample_starts": sample,
                "sample_ts": save_ts,
                "sample_trajectories": path.trajectory,
                "sample_endpoints": path.ys,
            }
        figures["vertex_sizes"] = self._sizes_figure(setup, tally)
        summary = ("class", "count", "fraction", "lower", "upper", "exact_fraction")
        return Results(rows=rows, figures=figures, summary=summary, arrays=arrays)

    def _title(self) -> str:
        return (
            f"Score flow at $\\sigma$ = {self.sigma:g} to $t$ = {self.t1:g}: "
            f"d = {self.d}, N = {self.n}, "
            f"{self.num_starts:,} {_starts_text(self)}"
        )

    def _fractions_figure(self, rows):
        fig, axes = plot.figure(width=7.5, height=4.5)
        plot.class_bars(
            axes[0, 0],
            rows,
            exact_key="exact_fraction",
            exact_label="exact: vertex nearest the start (Z3)",
            confidence=self.confidence,
        )
        axes[0, 0].set_title("Where the score flow ends", fontsize=11)
        fig.suptitle(self._title(), fontsize=10)
        return fig

    def _trajectory_figure(self, setup: _Setup, path: np.ndarray, labels: np.ndarray):
        fig, axes = plot.figure(width=6.0, height=6.2)
        ax = axes[0, 0]
        _hyperbox_square(ax, self, setup.lengths)
        units = np.asarray(setup.points) / setup.lengths[:, None]
        _trajectories(ax, self, path, labels, units)
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
        _trajectory_legend(fig, labels, ramp=False)
        return fig

    def _sizes_figure(self, setup: _Setup, tally: _Tally):
        fig, axes = plot.figure(width=7.5, height=4.2)
        ax = axes[0, 0]
        sizes = np.arange(self.n + 1)
        fraction = tally.vertex_sizes / self.num_starts
        colours = [
            plot.CLASS_COLOURS["origin" if k == 0 else "training" if k == 1 else "virtual"]
            for k in sizes
        ]
        ax.bar(sizes, fraction, color=colours, alpha=0.85)
        # Each coordinate of a start rounds to 1 independently with probability
        # P(s_n >= L_n / 2), so |S| is Poisson-binomial.
        centre = setup.lengths / 2 if self.start_centre == "box-centre" else np.zeros(self.n)
        z = (centre - setup.lengths / 2) / self.start_scale
        probabilities = 0.5 * (1 + np.vectorize(math.erf)(z / math.sqrt(2)))
        ax.plot(sizes, _poisson_binomial(probabilities), "D", mfc="white", mec="black", ms=5)
        handles = [
            Patch(
                color=plot.CLASS_COLOURS[c],
                alpha=0.85,
                label=f"endpoints at a vertex, {k}: {plot.CLASS_LABELS[c]}",
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
        ax.legend(handles=handles, fontsize=8, frameon=False, loc="upper right")
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


@register
@dataclasses.dataclass(frozen=True)
class OrthogonalProbabilityFlow(_OrthogonalFlow):
    r"""The probability flow $dx/d\sigma = (x - h^*_{\alpha\sigma}(x)) / \sigma$ from
    $\sigma_{\max}$ down to $\sigma_{\min}$ (SCIENCE.md Z4, Z6.2) of the closed-form
    minimum-norm denoiser on $N$ orthogonal points, from many Gaussian starts, for one or
    several $\sigma_{\max}$ (the same starts for each). Every endpoint is classified (Z5)
    and compared with the exact closed-form solution of Z4.

    The theorem of Z4 is about early versus late starts: a coordinate that starts in a
    flat region of its ramp ends at a face, one that starts on the ramp is only pushed
    away from the ramp's midpoint by $(L - 2\rho_{\min}) / (L - 2\rho_{\max})$. Starting
    early (large $\sigma_{\max}$, wide flat regions) sends the flow to vertices; starting
    late leaves it on the hyperbox's boundary between vertices (manifold points) or inside.

    *Choice* (the papers leave it open): the starts are Gaussian,
    $y_0 \sim \mathcal{N}(c, s^2 I)$, with $c = \sum_n x_n / 2$ the hyperbox centre
    (`start_centre=box-centre`: every coordinate at its ramp's unstable midpoint, so no
    vertex is favoured) or $c = 0$ (`origin`), and $s$ = `start_scale` (default 0.3).
    Start $i$ is drawn from `fold_in(key(seed), i)`, whatever the block size, so any start
    can be recomputed from `arrays.npz` (`key`, `start_centre`, `start_scale`).
    The textbook start $\mathcal{N}(0, \sigma_{\max}^2 I)$ is no use here: the closed
    form needs $\sigma_{\max} < \min_n L_n / (2\alpha)$ (0.0913 at the defaults), so every
    coordinate would start flat at 0 and every flow would end at the origin.

    **Rows**, one per endpoint class and $\sigma_{\max}$: the configuration; `count`,
    `total`, `fraction` and its Wilson interval `lower`, `upper`; `exact_fraction`, the
    class's fraction among the exact endpoints (Z4's closed-form solution);
    `agreement`, the fraction of starts whose flow and exact endpoints share a class;
    and `max_error`, the largest $L^\infty$ distance between a flow endpoint and its
    exact endpoint.

    Writes `class_fractions.png` (each class's fraction against $\sigma_{\max}$, with its
    Wilson interval and the exact fraction), `trajectories.png` (sample trajectories on two
    training directions, one panel per $\sigma_{\max}$) and `coordinates.png` (the
    distribution of the endpoints' hyperbox coordinates).
    """

    name: ClassVar[str] = "orthogonal-probability-flow"
    summary: ClassVar[str] = (
        "Z4/Z6.2: probability flow of the closed-form min-norm denoiser (orthogonal data), "
        "endpoint classes against the starting noise level sigma_max"
    )

    sigma_max: tuple[float, ...] = param(
        (0.02, 0.04, 0.06, 0.08, 0.085, 0.09),
        "starting noise level(s), a comma-separated sweep run on the same starts; the closed "
        "form needs 2 * alpha * sigma_max < min L_n (sigma_max < 0.0913 at the defaults).",
    )
    sigma_min: float = param(1e-3, "final noise level, below every sigma_max.")
    steps: int = param(
        64, "solver steps on the schedule's grid (fixed-grid solvers) or first-step hint (tsit5)."
    )
    schedule: Literal["geometric", "karras"] = param(
        "geometric", "noise-level grid of the fixed-grid solvers."
    )

    def __post_init__(self):
        _check_common(self)
        if not self.sigma_max:
            raise ValueError("sigma_max needs at least one value.")
        _check_sigma(self, "sigma_max", self.sigma_max)
        if not 0 < self.sigma_min < min(self.sigma_max):
            raise ValueError(
                f"need 0 < sigma_min < every sigma_max, got sigma_min={self.sigma_min:g} "
                f"and sigma_max={min(self.sigma_max):g}."
            )

    def quick(self) -> "OrthogonalProbabilityFlow":
        return dataclasses.replace(self, num_starts=2000, steps=32, trajectories=30)

    def run(self, out: Path, *, progress: bool = True) -> Results:
        setup = _setup(self)
        dtype = setup.points.dtype
        sigma_min = jnp.asarray(self.sigma_min, dtype)
        options = dict(steps=self.steps, solver=self.solver, schedule=self.schedule)
        size = min(self.chunk_size, self.num_starts)
        sample = setup.starts.rows(np.arange(self.trajectories)) if self.trajectories else None

        pieces = Pieces(out, self)
        rows, tallies, paths, save_levels, sample_labels = [], [], [], [], []
        total = self.num_starts * len(self.sigma_max)
        with tqdm(total=total, desc="probability flow", unit="start", disable=not progress) as bar:
            for index, value in enumerate(self.sigma_max):
                bar.set_postfix_str(f"sigma_max={value:g}")
                # Traced scalars: the sweep compiles once.
                sigma_max = jnp.asarray(value, dtype)
                solve = lambda y0: (
                    probability_flow(
                        setup.denoiser, y0, sigma_max=sigma_max, sigma_min=sigma_min, **options
                    ).ys
                )
                exact = lambda y0: exact_probability_flow(
                    setup.denoiser, y0, sigma_max=sigma_max, sigma_min=sigma_min
                )
                tally = _tally(solve, exact, setup, size, bar, pieces, f"sigma_max{index}")
                tallies.append(tally)
                config = _common_config(self) | {
                    "sigma_max": value,
                    "sigma_min": self.sigma_min,
                    "schedule": self.schedule,
                }
                rows += _class_rows(self, config, tally)

                if self.trajectories:
                    # Pin the ends: geomspace's power rounds them out of [sigma_min, sigma_max].
                    levels = jnp.geomspace(sigma_max, sigma_min, 41, dtype=dtype)
                    levels = levels.at[0].set(sigma_max).at[-1].set(sigma_min)
                    path = probability_flow(
                        setup.denoiser,
                        sample,
                        sigma_max=sigma_max,
                        sigma_min=sigma_min,
                        save_sigmas=levels,
                        **options,
                    )
                    paths.append(path)
                    save_levels.append(levels)
                    sample_labels.append(
                        np.asarray(classify_endpoints(path.ys, setup.points, setup.tol).label)
                    )

        figures = {"class_fractions": self._fractions_figure(rows)}
        if self.trajectories:
            figures["trajectories"] = self._trajectory_figure(setup, paths, sample_labels)
        figures["coordinates"] = self._coordinates_figure(setup, tallies)
        stack = lambda xs: np.stack([np.asarray(x) for x in xs])
        arrays = {
            "points": setup.points,
            "key": jr.key_data(setup.key),
            "start_centre": setup.starts.centre,
            "start_scale": setup.starts.scale,
            "sigma_max": np.asarray(self.sigma_max),
            "labels": stack(t.labels for t in tallies),
            "exact_labels": stack(t.exact_labels for t in tallies),
            "coordinate_bins": _COORDINATE_BINS,
            "coordinate_counts": stack(t.coordinates for t in tallies),
        }
        if self.trajectories:
            arrays |= {
                "sample_starts": sample,
                "sample_sigmas": stack(save_levels),
                "sample_trajectories": stack(p.trajectory for p in paths),
                "sample_endpoints": stack(p.ys for p in paths),
            }
        summary = ("sigma_max", "class", "count", "fraction", "lower", "upper", "exact_fraction")
        return Results(rows=rows, figures=figures, summary=summary, arrays=arrays)

    def _title(self) -> str:
        return (
            f"Probability flow to $\\sigma_{{\\min}}$ = {self.sigma_min:g} "
            f"({self.solver}, {self.steps} steps, {self.schedule}): d = {self.d}, N = {self.n}, "
            f"{self.num_starts:,} {_starts_text(self)}"
        )

    def _fractions_figure(self, rows):
        exact_label = "exact closed-form solution (Z4)"
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
                f"Where the probability flow from $\\sigma_{{\\max}}$ = {self.sigma_max[0]:g} ends",
                fontsize=11,
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
            )
            limit = _sigma_limit(self)
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
                "Starting early sends the flow to vertices; "
                "starting late leaves it on the boundary",
                fontsize=10,
            )
            ax.legend(fontsize=8, frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
        fig.suptitle(self._title(), fontsize=9)
        return fig

    def _trajectory_figure(self, setup: _Setup, paths, labels):
        count = len(paths)
        ncols = min(count, 3)
        nrows = math.ceil(count / ncols)
        fig, axes = plot.figure(ncols, nrows, width=4.3, height=4.6, sharex=True, sharey=True)
        units = np.asarray(setup.points) / setup.lengths[:, None]
        alpha = _alpha(self)
        for ax, value, path, label in zip(axes.flat, self.sigma_max, paths, labels):
            _hyperbox_square(ax, self, setup.lengths, rho=alpha * value)
            _trajectories(ax, self, np.asarray(path.trajectory), label, units)
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
            self._title() + f"\n{len(labels[0])} trajectories projected on "
            f"$x_{{{i + 1}}}$, $x_{{{j + 1}}}$; colour: class of the full endpoint in all "
            f"{self.d} dimensions",
            fontsize=9,
        )
        _trajectory_legend(fig, np.concatenate(labels), ramp=True)
        return fig

    def _coordinates_figure(self, setup: _Setup, tallies):
        fig, axes = plot.figure(width=8.0, height=4.5)
        ax = axes[0, 0]
        width = np.diff(_COORDINATE_BINS)
        centres = _COORDINATE_BINS[:-1] + width / 2
        total = self.num_starts * self.n
        start = tallies[0].start_coordinates / (total * width)
        ax.plot(centres, start, color="black", ls="--", lw=1, label="starts")
        cmap = plot.colormap("viridis")
        for k, (value, tally) in enumerate(zip(self.sigma_max, tallies)):
            colour = cmap(k / max(len(tallies) - 1, 1))
            ax.stairs(
                tally.coordinates / (total * width),
                _COORDINATE_BINS,
                color=colour,
                lw=1.3,
                label=f"endpoints, $\\sigma_{{\\max}}$ = {value:g}",
            )
        band = (self.tol if self.tol is not None else 0.2 * float(np.min(setup.lengths))) / float(
            np.min(setup.lengths)
        )
        for face in (0.0, 1.0):
            ax.axvspan(face - band, face + band, color="grey", alpha=0.15, lw=0)
        ax.plot([], [], color="grey", alpha=0.3, lw=6, label="within tol of a face")
        ax.set_yscale("log")
        ax.set_xlim(_COORDINATE_BINS[0], _COORDINATE_BINS[-1])
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

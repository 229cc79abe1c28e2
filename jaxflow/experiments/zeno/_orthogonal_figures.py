"""Figure pieces of the flows on orthogonal data: the hyperbox face two training
directions span, sample trajectories projected on it coloured by their endpoint's class,
and their legend (every class, the empty ones marked as such)."""

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ...estimators import EndpointClass
from .. import _plotting as plot


def hyperbox_square(
    ax: Axes, projection: Sequence[int], lengths: np.ndarray, rho: float | None = None
) -> None:
    """The hyperbox's face spanned by the two `projection` directions, with its vertices;
    optionally the ramp edges $\\rho$ and $L - \\rho$ of the closed form."""
    i, j = projection
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


def _colour(label) -> str:
    return plot.CLASS_COLOURS[EndpointClass(int(label)).name.lower()]


def trajectories(
    ax: Axes, projection: Sequence[int], path: np.ndarray, labels: np.ndarray, units: np.ndarray
) -> None:
    """Sample trajectories `path` (trajectories, saves, d) projected on $u_i, u_j$,
    coloured by their endpoint's class."""
    i, j = projection
    xy = path @ units[[i, j]].T  # (trajectories, saves, 2)
    for track, label in zip(xy, labels):
        ax.plot(track[:, 0], track[:, 1], color=_colour(label), lw=0.9, alpha=0.7, zorder=3)
    ax.scatter(
        xy[:, 0, 0], xy[:, 0, 1], s=10, facecolor="none", edgecolor="black", lw=0.6, zorder=3
    )
    colours = [_colour(c) for c in labels]
    ax.scatter(xy[:, -1, 0], xy[:, -1, 1], s=18, c=colours, edgecolor="black", lw=0.4, zorder=5)
    ax.set_aspect("equal")
    ax.set_xlabel(f"$u_{{{i + 1}}} \\cdot y$")
    ax.set_ylabel(f"$u_{{{j + 1}}} \\cdot y$")


def trajectory_legend(fig: Figure, labels: np.ndarray, *, ramp: bool) -> None:
    """The legend below `fig`: every endpoint class (one no sample trajectory reaches is
    kept and marked "none", so an empty class reads as empty, not as left out), the
    markers, and the closed form's ramp edges when `ramp`."""
    handles = []
    for c in EndpointClass:
        name = c.name.lower()
        text = {"origin": "ends at the origin", "other": "ends elsewhere (other)"}.get(
            name, f"ends at a {plot.CLASS_LABELS[name]}"
        )
        empty = not np.any(labels == c)
        handles.append(
            Line2D(
                [],
                [],
                color=plot.CLASS_COLOURS[name],
                lw=2,
                alpha=0.4 if empty else 1.0,
                label=f"{text}: none" if empty else text,
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
        ncols=4,
        fontsize=8,
        frameon=False,
    )


def starts_text(start_centre: str, start_scale: float) -> str:
    centre = r"\Sigma_n x_n / 2" if start_centre == "box-centre" else "0"
    return f"starts $\\sim \\mathcal{{N}}({centre},\\ {start_scale:g}^2 I)$"


def poisson_binomial(probabilities: np.ndarray) -> np.ndarray:
    """The distribution of the number of successes of independent trials with success
    probabilities `probabilities`."""
    pmf = np.array([1.0])
    for q in probabilities:
        pmf = np.convolve(pmf, [1 - q, q])
    return pmf

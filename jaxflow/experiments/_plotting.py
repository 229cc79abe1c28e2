"""Figure helpers shared by the presets: endpoint-class colours, fractions with their
confidence intervals, as bars or as curves over a swept parameter.

Every helper draws on a `matplotlib.figure.Figure` it is given or makes, never on
pyplot's global state, so presets can run in threads, tests and notebooks alike.
"""

from collections.abc import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ..estimators import EndpointClass


# Memorization in a warm colour; the rest cool or neutral, and colour-blind safe (the
# Okabe-Ito palette).
CLASS_COLOURS = {
    "training": "#D55E00",
    "virtual": "#0072B2",
    "origin": "#999999",
    "manifold": "#009E73",
    "other": "#CC79A7",
}
CLASS_LABELS = {
    "training": "training point",
    "virtual": "virtual point",
    "origin": "origin",
    "manifold": "manifold point",
    "other": "other",
}
CLASS_NAMES = tuple(c.name.lower() for c in EndpointClass)


def figure(ncols: int = 1, nrows: int = 1, *, width: float = 5.0, height: float = 4.0, **kwargs):
    """A figure and its axes (an array when there are several), off pyplot."""
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kwargs)
    return fig, axes


def colormap(name: str):
    """A registered matplotlib colormap, without pyplot."""
    return colormaps[name]


def percent(x: float) -> str:
    """A fraction as a percentage, with enough digits to tell 0.004% from 0% and 99.996%
    from 100% (an interval near 0 or 1 would otherwise print as a point)."""
    p = 100 * float(x)
    if p in (0.0, 100.0) or not np.isfinite(p):
        return f"{p:.0f}%"
    gap = min(p, 100 - p)
    digits = 2 if gap >= 0.1 else min(int(np.ceil(-np.log10(gap))) + 1, 8)
    return f"{p:.{digits}f}%"


def top_edge_markers(ax: Axes, x, *, ms: float = 5.0, **kwargs) -> None:
    """Upward triangles on the top edge of `ax` at `x`: values beyond the axis (an
    infinite distance, a crossing beyond the grid). Keywords go to `Axes.plot`."""
    x = np.asarray(x)
    ax.plot(
        x, np.ones(len(x)), "^", ms=ms, clip_on=False, transform=ax.get_xaxis_transform(), **kwargs
    )


def interval_errors(fraction, lower, upper) -> np.ndarray:
    """`yerr` for `Axes.errorbar`/`Axes.bar` from an interval around each fraction."""
    fraction, lower, upper = map(np.asarray, (fraction, lower, upper))
    # Rounding can put a fraction a hair outside its own interval; never draw negative bars.
    return np.stack([np.maximum(fraction - lower, 0), np.maximum(upper - fraction, 0)])


def class_bars(
    ax: Axes,
    rows: Sequence[dict],
    *,
    exact_key: str | None = None,
    exact_label: str = "exact",
    confidence: float = 0.95,
) -> None:
    """Bars of each endpoint class's fraction with Wilson error bars, annotated with the
    percentage and count; `rows` has one dict per class with `class`, `count`,
    `fraction`, `lower`, `upper` (and `exact_key`, drawn as markers, if given)."""
    names = [r["class"] for r in rows]
    x = np.arange(len(rows))
    fraction = np.array([r["fraction"] for r in rows])
    lower = np.array([r["lower"] for r in rows])
    upper = np.array([r["upper"] for r in rows])
    ax.bar(
        x,
        fraction,
        color=[CLASS_COLOURS[n] for n in names],
        alpha=0.85,
        yerr=interval_errors(fraction, lower, upper),
        capsize=5,
        ecolor="black",
    )
    if exact_key is not None:
        ax.scatter(
            x,
            [r[exact_key] for r in rows],
            marker="D",
            s=40,
            facecolor="white",
            edgecolor="black",
            zorder=3,
        )
    for xi, r in zip(x, rows):
        ax.annotate(
            f"{percent(r['fraction'])}\n[{percent(r['lower'])}, {percent(r['upper'])}]"
            f"\n({r['count']:,})",
            (xi, r["upper"]),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=7.5,
        )
    ax.set_xticks(x, [CLASS_LABELS.get(n, n).replace(" ", "\n") for n in names])
    ax.set_ylim(0, 1.22)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_ylabel("fraction of endpoints")
    ax.grid(axis="y", alpha=0.3)
    # Below the axes: any bar may reach 1.
    handles = [
        Patch(
            facecolor="#BBBBBB",
            edgecolor="black",
            lw=0.5,
            label=f"flow endpoints, with the {confidence:.0%} Wilson interval "
            "[annotated: fraction, interval, count]",
        )
    ]
    if exact_key is not None:
        handles.append(
            Line2D([], [], marker="D", ls="", mfc="white", mec="black", label=exact_label)
        )
    ax.figure.legend(handles=handles, loc="outside lower center", fontsize=8, frameon=False)


def class_curves(
    ax: Axes,
    rows: Sequence[dict],
    x_key: str,
    *,
    exact_key: str | None = None,
    exact_label: str = "exact",
    confidence: float = 0.95,
    hide_empty: bool = True,
) -> None:
    """Each endpoint class's fraction against the swept parameter `x_key`, with its
    Wilson interval as error bars and a band; classes never observed (and never
    predicted) are left out of the plot when `hide_empty`, else drawn as flat zero lines
    and marked "none" in the legend."""
    for name in CLASS_NAMES:
        sub = sorted((r for r in rows if r["class"] == name), key=lambda r: r[x_key])
        if not sub:
            continue
        observed = any(r["count"] for r in sub)
        predicted = exact_key is not None and any(r[exact_key] for r in sub)
        if hide_empty and not (observed or predicted):
            continue
        x = np.array([r[x_key] for r in sub])
        f = np.array([r["fraction"] for r in sub])
        lo = np.array([r["lower"] for r in sub])
        hi = np.array([r["upper"] for r in sub])
        colour = CLASS_COLOURS[name]
        ax.errorbar(
            x,
            f,
            # Above the exact markers, which it usually covers exactly; an empty class
            # below the others, so that its zero line hides no observed one.
            zorder=4 if observed or predicted else 2,
            yerr=interval_errors(f, lo, hi),
            color=colour,
            marker="o",
            ms=4,
            capsize=3,
            label=CLASS_LABELS[name] + ("" if observed or predicted else ": none"),
        )
        ax.fill_between(x, lo, hi, color=colour, alpha=0.2, linewidth=0)
        if exact_key is not None:
            ax.plot(
                x,
                [r[exact_key] for r in sub],
                color=colour,
                ls=":",
                lw=1,
                marker="D",
                ms=6,
                mfc="white",
                mec=colour,
                zorder=3,
            )
    if exact_key is not None:
        ax.plot(
            [], [], color="black", ls=":", lw=1, marker="D", ms=6, mfc="white", label=exact_label
        )
    ax.plot(
        [],
        [],
        color="black",
        marker="o",
        ms=4,
        ls="-",
        label=f"simulated ({confidence:.0%} Wilson interval)",
    )
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("fraction of endpoints")
    ax.grid(alpha=0.3)


# Colour-blind-safe colours for series that are not endpoint classes (the Okabe-Ito
# palette, the pale yellow last), and line styles for a second variable drawn in the
# same colours.
SERIES_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
LINE_STYLES = ("-", "--", "-.", ":")


def series_colour(i: int) -> str:
    """The `i`-th colour of `SERIES_COLOURS`, cycling."""
    return SERIES_COLOURS[i % len(SERIES_COLOURS)]


def line_style(i: int) -> str:
    """The `i`-th line style of `LINE_STYLES`, cycling."""
    return LINE_STYLES[i % len(LINE_STYLES)]

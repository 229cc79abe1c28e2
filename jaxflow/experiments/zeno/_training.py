r"""Trained minimum-norm shallow ReLU denoisers, one per noise level of a grid ([Z],
Sections 2 and 6): what the augmented Lagrangian reaches on orthogonal data with and
without the origin as a training point, against the closed form and a cheaper
interpolant."""

import dataclasses
import math
from collections.abc import Mapping
from typing import ClassVar, Literal

import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pyarrow as pa
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ...data import forward_ve
from ...flows import Geometric, Karras
from ...training import MinNormFit, MinNormTraining, train_min_norm
from .. import _plotting as plot
from .._params import at_least, param, positive
from .._preset import AbstractPreset, Arrays, Footprint, Tabulated
from ._common import float_dtype
from ._trained import (
    CHEAPER,
    CheaperInterpolant,
    CLOSED,
    DATA_SET_COLOURS,
    DATA_SET_LABELS,
    DATA_SETS,
    DataSet,
    evaluate,
    FRESH,
    largest_distance,
    legend_entry,
    MOST,
    subset_sums,
    timed_train,
    TRAINED,
    training_footprint,
    training_points,
)


# The diagnostics of `jaxflow.training.MinNormDiagnostics` kept per level.
_PER_LEVEL = (
    "residual_train",
    "residual_fresh",
    "cost",
    "cost_raw",
    "steps",
    "reference_rho",
    "reference_cost",
    "distance_fresh",
    "distance_sums",
)
_CURVES = ("loss", "residual", "cost_curve")


@dataclasses.dataclass(frozen=True)
class ZenoTraining(AbstractPreset):
    r"""Trains one minimum-norm shallow ReLU denoiser per noise level ([Z], Sections 2 and
    6; docs/models.md#trained-networks) on $N$ orthogonal points $x_n = L e_n$ in $d$
    dimensions, two data sets: **with the origin** as a training point (the right-angled
    simplex $\{0, x_1, \dots, x_N\}$, where the closed form $h^*_\rho$ of [Z] is the
    minimum-norm interpolant of the noise balls) and **without** (where it only bounds
    the minimum from above). At each level $\sigma_l$ of a `schedule` grid from
    `sigma_max` down to `sigma_min`, a network of width $K$ is trained by the augmented
    Lagrangian ([`jaxflow.training.train_min_norm`][]) to interpolate $M$ noisy copies
    $y_{nm} = x_n + \sigma_l z_{nm}$ of each point at the least cost
    $C = \tfrac12\sum_k (|a_k|^2 + |w_k|^2)$; every level of a data set is trained in one
    compiled program, and the stack goes to the shared training cache
    (docs/conventions.md#training-cache), so a later experiment with the same settings
    loads it (`ZenoTraining.train`).

    What it shows: where the networks interpolate (largest residual on their training
    copies below `residual_tol`, in units of $L$) and where they generalise to fresh
    copies; their cost against the closed form fitted to the copies' own extent
    $\hat\rho = \max |u_k \cdot (y_{nm} - x_n)|$ (cost $\sum_k 2L_k / (L_k - 2\hat\rho)$,
    valid while $2\hat\rho < \min L$) and, without the origin, against the cheaper
    interpolant whose ramps run along $u_n - \frac{1}{N-1}\sum_{k\ne n} u_k$ (cost
    $2NL / (L\sqrt{N/(N-1)} - 2\rho')$); and how far the trained functions are from each
    at every sum of one to four training points, the vertices whose stability [Z]'s
    theorems are about. The grid reaches far above the closed form's range
    ($\sigma_{\max} = 4L$ while $2\hat\rho < L$ needs $\sigma \lesssim 0.1 L$ at the
    defaults), as [Z]'s sampler starts from pure noise.

    !!! note
        What it does not show: the flows of these networks (their endpoints and
        memorization), virtual-point stability, the dependence on $M$ or online copies,
        or weight decay and dropout. With $M$ copies in $d = 30$ dimensions the networks
        interpolate their copies but not fresh ones (the fresh residual is of the order
        of the noise, $\sigma\sqrt{d}$), and they cost well below the closed form
        (finitely many copies constrain less than whole balls), so they differ from it by
        order one at the sums of training points: the closed form is the theory's
        object, not what training finds at these sizes. At the top of the grid ($K$ units
        for $(N+1)M$ copies in general position) the default width is too narrow to
        interpolate.

    *Defaults* (docs/conventions.md#zeno-training): $d = N = 30$, $L = 1$, 10 geometric
    levels from 4 to 0.02, $K = 128$, $M = 8$, at most 40 000 Adam steps per level (the
    library's training settings: the learning rate decaying from $10^{-2}$ to $10^{-4}$,
    multipliers moved every 200 steps, stopping at a residual of $10^{-4}$), float64.
    Measured on the 2-core CPU (shared with other work): about 0.45-0.55 ms per Adam
    step at this size, and no level reaches the stopping residual, so each data set
    takes its full 400 000 steps, about 3-4 minutes, and the whole default run 6.5-8
    minutes (395 s; 492 s with other jobs on the cores), within the ten-minute budget.
    Why these values: 40 000 steps are what the smallest levels need to interpolate to
    $10^{-3}$ (30 000 left them at $1$-$3 \times 10^{-3}$), and even so $\sigma = 0.01$
    stayed just above it, hence `sigma_min = 0.02`; ten levels then fit the budget;
    $K = 256$ cost 1.6 times as much per step. A GPU configuration closer to [Z]'s
    sampler (more than a hundred levels, the 2023 paper's $M = 100$):
    `levels=200 width=512 copies=100` (the levels are vmapped there).

    **Cells:** one per data set (`with-origin`, `without-origin`): the whole grid of
    levels trained in one compiled program (or loaded from the training cache); each
    returns the diagnostics per level, the training curves, the cheaper interpolant's
    cost and distance, and the wall time of the call.

    **Rows**, one per data set and level: the configuration, `reference` (`minimum` or
    `upper bound`: what the closed form is for this data set), `level`, `sigma`,
    `steps_taken`, `residual_train`, `residual_fresh`, `interpolates`
    (`residual_train < residual_tol * L`), `cost` (after the free rebalancing
    $|a_k| = |w_k|$), `cost_raw` (as trained), `rho_hat`, `closed_form_valid`
    ($2\hat\rho < \min L$), `closed_form_cost` (at $\hat\rho$; empty where invalid),
    `cost_ratio` (`cost / closed_form_cost`), `distance_fresh` and `distance_sums` (the
    largest $|h(y) - h^*_{\hat\rho}(y)|$ over fresh copies and over the sums of one to four
    training points), `cheaper_cost` and `cheaper_distance_sums` (without the origin,
    where the closed form exists). The wall time of each cell's call (training every
    level in one program, or loading the stack from the cache) is saved beside the table,
    not in it, as
    `arrays.npz`'s `with_origin_train_seconds`, `with_origin_from_cache` (and
    `without_origin_...`): a table is the same whichever run computed it.

    **Figures:** `residual_cost` (largest residual on the training and fresh copies
    against $\sigma$ with `residual_tol`; cost, raw cost, the closed form's cost and the
    cheaper interpolant's against $\sigma$), `distance` (distance to the closed form at the
    subset sums and on fresh copies, and to the cheaper interpolant, against $\sigma$),
    `training_curves` (largest residual and cost every `inner_steps` steps, one line per
    level).
    """

    name: ClassVar[str] = "zeno-training"
    summary: ClassVar[str] = (
        "[Z] Secs. 2, 6: trained min-norm ReLU denoisers, one per noise level (orthogonal "
        "data with and without the origin): residual, cost and distance to the closed form"
    )
    schema: ClassVar[pa.Schema] = pa.schema(
        [
            pa.field("data_set", pa.string()),
            pa.field("reference", pa.string()),
            pa.field("d", pa.int64()),
            pa.field("n", pa.int64()),
            pa.field("length", pa.float64()),
            pa.field("width", pa.int64()),
            pa.field("copies", pa.int64()),
            pa.field("steps", pa.int64()),
            pa.field("seed", pa.int64()),
            pa.field("level", pa.int64()),
            pa.field("sigma", pa.float64()),
            pa.field("steps_taken", pa.int64()),
            pa.field("residual_train", pa.float64()),
            pa.field("residual_fresh", pa.float64()),
            pa.field("interpolates", pa.bool_()),
            pa.field("cost", pa.float64()),
            pa.field("cost_raw", pa.float64()),
            pa.field("rho_hat", pa.float64()),
            pa.field("closed_form_valid", pa.bool_()),
            pa.field("closed_form_cost", pa.float64()),
            pa.field("cost_ratio", pa.float64()),
            pa.field("distance_fresh", pa.float64()),
            pa.field("distance_sums", pa.float64()),
            pa.field("cheaper_cost", pa.float64()),
            pa.field("cheaper_distance_sums", pa.float64()),
        ]
    )
    summary_columns: ClassVar[tuple[str, ...]] = (
        "data_set",
        "sigma",
        "residual_train",
        "residual_fresh",
        "cost",
        "closed_form_cost",
        "cheaper_cost",
        "distance_sums",
    )
    # The data sets are the cells; the tolerance of the claim, the cache and the bar only
    # change the table or the screen.
    cell_independent: ClassVar[frozenset[str]] = frozenset({"data_sets", "residual_tol", "cache"})

    d: int = param(30, "dimension d of the space.", rule=at_least(1))
    n: int = param(
        30, "number N of orthogonal training points x_n = L e_n (N <= d).", rule=at_least(1)
    )
    length: float = param(1.0, "the length L of every training point.", rule=positive)
    data_sets: tuple[DataSet, ...] = param(
        DATA_SETS,
        "data sets to train: with-origin ({0, x_1, ..., x_N}: the closed form is the "
        "minimum-norm interpolant) and/or without-origin (the N points: it is an upper "
        "bound).",
        distinct=True,
    )
    levels: int = param(10, "number of noise levels of the grid.", rule=at_least(2))
    sigma_max: float = param(
        4.0, "the highest noise level (the grid's first), in the units of L.", rule=positive
    )
    sigma_min: float = param(0.02, "the lowest noise level, below sigma_max.", rule=positive)
    schedule: Literal["geometric", "karras"] = param(
        "geometric", "spacing of the levels between sigma_max and sigma_min."
    )
    width: int = param(128, "K, ReLU units of each network.", rule=at_least(1))
    copies: int = param(8, "M, noisy copies of each training point per level.", rule=at_least(1))
    steps: int = param(40_000, "the most Adam steps per level.", rule=at_least(1))
    inner_steps: int = param(
        200,
        "Adam steps between multiplier updates (and points of the training curves).",
        rule=at_least(1),
    )
    tol: float = param(
        1e-4,
        "stop a level once its largest residual on the training copies is below this.",
        rule=positive,
    )
    residual_tol: float = param(
        1e-3,
        "a level interpolates when its largest training residual is below residual_tol * L.",
        rule=positive,
    )
    cache: bool = param(
        True,
        "keep the trained stacks in the shared training cache ($JAXFLOW_CACHE/training or "
        "~/.cache/jaxflow/training) and load them from there when present.",
    )
    dtype: Literal["float32", "float64"] = param("float64", "floating dtype of the training.")

    def check(self) -> None:
        if self.n > self.d:
            raise ValueError(f"n={self.n}, d={self.d}: need n <= d.")
        if not self.sigma_min < self.sigma_max:
            raise ValueError(
                f"sigma_min={self.sigma_min:g}: must lie below sigma_max={self.sigma_max:g}."
            )
        self.training()  # its own checks, e.g. on the steps

    def quick(self) -> "ZenoTraining":
        return dataclasses.replace(
            self,
            d=4,
            n=4,
            levels=5,
            sigma_max=2.0,
            sigma_min=0.04,
            width=32,
            copies=4,
            steps=15_000,
        )

    def footprint(self) -> Footprint:
        per_call, stored = training_footprint(self, copies=self.copies, levels=self.levels)
        return Footprint(
            memory=2 * per_call + len(self.data_sets) * stored,
            disk=4 * len(self.data_sets) * stored,
            set_by=("levels", "width", "copies", "n", "d", "steps"),
        )

    def cells(self) -> tuple[DataSet, ...]:
        return self.data_sets

    def cell_name(self, cell: DataSet) -> str:
        return cell

    # ----------------------------------------------------------------------------------
    # The training call, public so that later experiments load the same stacks.

    def training(self) -> MinNormTraining:
        """The training settings of every level ([`jaxflow.training.MinNormTraining`][])."""
        return MinNormTraining(
            width=self.width,
            copies=self.copies,
            steps=self.steps,
            inner_steps=self.inner_steps,
            tol=self.tol,
        )

    def points(self, data_set: DataSet) -> np.ndarray:
        """The training points: $x_n = L e_n$, after the origin for `with-origin`."""
        return training_points(data_set, self.n, self.d, self.length, self.dtype)

    def sigmas(self) -> np.ndarray:
        """The noise levels, from `sigma_max` down to `sigma_min`."""
        dtype = float_dtype(self.dtype)
        schedule = Geometric() if self.schedule == "geometric" else Karras()
        grid = schedule.grid(
            jnp.asarray(self.sigma_max, dtype), jnp.asarray(self.sigma_min, dtype), self.levels - 1
        )
        return np.asarray(grid)

    def inputs(self, data_set: DataSet):
        """`(points, sigmas, copies, key)` of `data_set`'s training call."""
        key = jr.fold_in(jr.key(self.seed), DATA_SETS.index(data_set))
        copy_key, train_key = jr.split(key)
        points, sigmas = self.points(data_set), self.sigmas()
        copies = forward_ve(
            jnp.asarray(points), jnp.asarray(sigmas), key=copy_key, draws=self.copies
        )
        return points, sigmas, copies, train_key

    def train(self, data_set: DataSet, *, progress: bool = False) -> MinNormFit:
        """The trained stack of `data_set` (a [`jaxflow.training.MinNormFit`][]), from the
        training cache when `cache` is set and it holds the stack, else trained (and
        saved there)."""
        points, sigmas, copies, key = self.inputs(data_set)
        return train_min_norm(
            points,
            sigmas,
            self.training(),
            key=key,
            copies=copies,
            cache=True if self.cache else None,
            progress=progress,
        )

    # ----------------------------------------------------------------------------------

    def prepare(self, *, progress: bool) -> bool:
        # The training bar over Adam steps, shown when the run shows its own.
        return progress

    def compute(self, cell: DataSet, context: bool) -> dict[str, np.ndarray]:
        fit, seconds, from_cache = timed_train(
            lambda: self.train(cell, progress=context), self.cache
        )
        diag = fit.diagnostics
        arrays = {name: np.asarray(getattr(diag, name)) for name in _PER_LEVEL + _CURVES}
        points, sigmas, copies, key = self.inputs(cell)
        arrays |= {
            "points": points,
            "sigmas": sigmas,
            "key": np.asarray(jr.key_data(key)),
            "reference": np.asarray(diag.reference),
            "train_seconds": np.asarray(seconds),
            "from_cache": np.asarray(from_cache),
        }
        nan = np.full(len(sigmas), np.nan)
        cost, distance = nan.copy(), nan.copy()
        if cell == "without-origin" and self.n >= 2:
            cheaper = CheaperInterpolant.fit(points, copies)
            sums = subset_sums(cheaper.points, MOST)
            for level in range(len(sigmas)):
                # Compared where the closed form exists too (its gap is narrower).
                if not (cheaper.valid(level) and np.isfinite(arrays["reference_cost"][level])):
                    continue
                cost[level] = cheaper.cost(level)
                distance[level] = largest_distance(
                    evaluate(fit.denoiser.network(level), sums), cheaper(level, sums)
                )
        arrays |= {"cheaper_cost": cost, "cheaper_distance_sums": distance}
        return arrays

    def tabulate(self, outputs: Mapping[DataSet, Arrays]) -> Tabulated:
        def value(x):
            x = float(x)
            return x if math.isfinite(x) else None

        rows, arrays = [], {}
        for data_set in self.data_sets:
            cell = outputs[data_set]
            reference = str(cell["reference"])
            n = len(cell["points"])
            for level, sigma in enumerate(cell["sigmas"]):
                valid = bool(np.isfinite(cell["reference_cost"][level]))
                cost, closed = float(cell["cost"][level]), value(cell["reference_cost"][level])
                rows.append(
                    {
                        "data_set": data_set,
                        "reference": reference,
                        "d": self.d,
                        "n": n,
                        "length": self.length,
                        "width": self.width,
                        "copies": self.copies,
                        "steps": self.steps,
                        "seed": self.seed,
                        "level": level,
                        "sigma": float(sigma),
                        "steps_taken": int(cell["steps"][level]),
                        "residual_train": float(cell["residual_train"][level]),
                        "residual_fresh": float(cell["residual_fresh"][level]),
                        "interpolates": bool(
                            cell["residual_train"][level] < self.residual_tol * self.length
                        ),
                        "cost": cost,
                        "cost_raw": float(cell["cost_raw"][level]),
                        "rho_hat": float(cell["reference_rho"][level]),
                        "closed_form_valid": valid,
                        "closed_form_cost": closed,
                        "cost_ratio": None if closed is None else cost / closed,
                        "distance_fresh": value(cell["distance_fresh"][level]),
                        "distance_sums": value(cell["distance_sums"][level]),
                        "cheaper_cost": value(cell["cheaper_cost"][level]),
                        "cheaper_distance_sums": value(cell["cheaper_distance_sums"][level]),
                    }
                )
            prefix = data_set.replace("-", "_")
            arrays[f"{prefix}_points"] = cell["points"]
            arrays[f"{prefix}_key"] = cell["key"]
            arrays[f"{prefix}_train_seconds"] = cell["train_seconds"]
            arrays[f"{prefix}_from_cache"] = cell["from_cache"]
            for name in _CURVES:
                arrays[f"{prefix}_{name}"] = cell[name]
        arrays["inner_steps"] = np.asarray(self.inner_steps)
        arrays["residual_tol"] = np.asarray(self.residual_tol * self.length)
        return Tabulated(rows, arrays)

    def figures(self, table: pa.Table, arrays: Mapping[str, np.ndarray]) -> dict[str, Figure]:
        rows = table.to_pylist()
        names = list(dict.fromkeys(r["data_set"] for r in rows))
        by = {name: [r for r in rows if r["data_set"] == name] for name in names}

        def column(name, key):
            return np.array([np.nan if r[key] is None else r[key] for r in by[name]], float)

        def boundary(ax, name):
            # Between the highest level where the closed form exists and the next one up.
            sigma, valid = column(name, "sigma"), column(name, "closed_form_valid") > 0
            if valid.any() and not valid.all():
                top = np.max(sigma[valid])
                above = np.min(sigma[~valid & (sigma > top)], initial=np.inf)
                if np.isfinite(above):
                    ax.axvline(
                        math.sqrt(top * above),
                        color=DATA_SET_COLOURS[name],
                        ls=":",
                        lw=1,
                        alpha=0.8,
                    )

        first = rows[0]
        tol = float(arrays["residual_tol"])
        title = (
            f"d = {first['d']}, N = {first['n'] - (names[0] == 'with-origin')} orthogonal "
            f"points, K = {first['width']}, M = {first['copies']}, at most {first['steps']:,} "
            "Adam steps per level"
        )

        # Residual and cost against sigma.
        fig, axes = plot.figure(2, width=5.6, height=4.4)
        ax = axes[0, 0]
        for name in names:
            sigma, colour = column(name, "sigma"), DATA_SET_COLOURS[name]
            ax.plot(sigma, column(name, "residual_train"), color=colour, **TRAINED)
            ax.plot(sigma, column(name, "residual_fresh"), color=colour, **FRESH)
            boundary(ax, name)
        ax.axhline(tol, color="black", ls="--", lw=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(r"noise level $\sigma$")
        ax.set_ylabel(r"largest residual $\max_{nm} |h(y_{nm}) - x_n|$")
        ax.set_title("Does each network interpolate?", fontsize=10)
        handles = [
            Line2D([], [], color=DATA_SET_COLOURS[n], lw=2, label=DATA_SET_LABELS[n]) for n in names
        ]
        handles += [
            legend_entry("training copies", TRAINED),
            legend_entry("fresh copies", FRESH),
            Line2D([], [], color="black", ls="--", lw=1, label=f"tolerance {tol:g}"),
            Line2D(
                [],
                [],
                color="grey",
                ls=":",
                lw=1,
                label=r"closed form exists below ($2\hat\rho < L$)",
            ),
        ]
        # Below the axes: the curves fill every corner.
        below = dict(fontsize=7, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.13))
        ax.legend(handles=handles, ncols=2, **below)
        ax.grid(alpha=0.3)

        ax = axes[0, 1]
        for name in names:
            sigma, colour = column(name, "sigma"), DATA_SET_COLOURS[name]
            ax.plot(sigma, column(name, "cost"), color=colour, **TRAINED)
            ax.plot(sigma, column(name, "cost_raw"), ":", color=colour, lw=1)
            ax.plot(sigma, column(name, "closed_form_cost"), color=colour, **CLOSED)
            if np.isfinite(column(name, "cheaper_cost")).any():
                ax.plot(sigma, column(name, "cheaper_cost"), color=colour, **CHEAPER)
            boundary(ax, name)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(r"noise level $\sigma$")
        ax.set_ylabel(r"cost $C$")
        ax.set_title("Cost of the trained networks and of the references", fontsize=10)
        handles = [
            legend_entry(r"trained, rebalanced $\sum_k |a_k||w_k|$", TRAINED),
            Line2D([], [], color="grey", ls=":", label="trained, raw"),
            legend_entry(r"closed form at $\hat\rho$", CLOSED),
        ]
        if "without-origin" in names:
            handles.append(legend_entry("cheaper interpolant (no origin)", CHEAPER))
        ax.legend(handles=handles, ncols=2, **below)
        ax.grid(alpha=0.3)
        fig.suptitle(title, fontsize=10)
        out = {"residual_cost": fig}

        # Distance to the references against sigma.
        fig, axes = plot.figure(1, width=6.4, height=4.4)
        ax = axes[0, 0]
        for name in names:
            sigma, colour = column(name, "sigma"), DATA_SET_COLOURS[name]
            ax.plot(sigma, column(name, "distance_sums"), color=colour, **TRAINED)
            ax.plot(sigma, column(name, "distance_fresh"), color=colour, **FRESH)
            if np.isfinite(column(name, "cheaper_distance_sums")).any():
                ax.plot(sigma, column(name, "cheaper_distance_sums"), color=colour, **CHEAPER)
        ax.set_xscale("log")
        ax.set_xlabel(r"noise level $\sigma$ (where the closed form exists)")
        ax.set_ylabel(r"largest distance $|h(y) - \mathrm{reference}(y)|$")
        handles = [
            Line2D([], [], color=DATA_SET_COLOURS[n], lw=2, label=DATA_SET_LABELS[n]) for n in names
        ]
        handles += [
            legend_entry(f"closed form, at the sums of 1-{MOST} points", TRAINED),
            legend_entry("closed form, on fresh copies", FRESH),
        ]
        if "without-origin" in names:
            handles.append(
                legend_entry(f"cheaper interpolant, at the sums of 1-{MOST} points", CHEAPER)
            )
        ax.legend(handles=handles, fontsize=7, frameon=False)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.set_title(
            "How far the trained networks are from the function [Z]'s theorems describe\n" + title,
            fontsize=9,
        )
        out["distance"] = fig

        # Training curves.
        inner = int(arrays["inner_steps"])
        fig, axes = plot.figure(len(names), 2, width=5.2, height=3.6)
        cmap = plot.colormap("viridis")
        for j, name in enumerate(names):
            prefix = name.replace("-", "_")
            sigma = column(name, "sigma")
            shade = (np.log(sigma) - np.log(sigma.min())) / max(
                np.log(sigma.max() / sigma.min()), 1e-12
            )
            for i, key in enumerate(("residual", "cost_curve")):
                ax = axes[i, j]
                curves = arrays[f"{prefix}_{key}"]
                x = inner * np.arange(1, curves.shape[1] + 1)
                for level, curve in enumerate(curves):
                    ax.plot(x, curve, color=cmap(shade[level]), lw=1)
                ax.set_yscale("log")
                ax.set_xlabel("Adam steps")
                ax.grid(alpha=0.3)
                if key == "residual":
                    ax.axhline(tol, color="black", ls="--", lw=1)
                    ax.set_ylabel("largest residual on the training copies")
                    ax.set_title(DATA_SET_LABELS[name], fontsize=9)
                else:
                    ax.set_ylabel(r"cost $C$ (rebalanced)")
            handles = [
                Line2D(
                    [], [], color=cmap(shade[level]), lw=2, label=rf"$\sigma$ = {sigma[level]:.3g}"
                )
                for level in sorted({0, len(sigma) // 2, len(sigma) - 1})
            ]
            axes[1, j].legend(handles=handles, fontsize=7, frameon=False)
        fig.suptitle("Training curves (one line per level). " + title, fontsize=9)
        out["training_curves"] = fig
        return out

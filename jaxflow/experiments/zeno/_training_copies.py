r"""Trained minimum-norm denoisers against the number of noisy copies $M$, offline and
online ([Z], Sections 2 and 6): how close the networks come to the interpolant of whole
noise balls as the copies fill them."""

import dataclasses
from collections.abc import Mapping
from typing import ClassVar, Literal

import numpy as np
import pyarrow as pa
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ...training import MinNormTraining
from .. import _plotting as plot
from .._params import at_least, param
from .._preset import Arrays, Footprint, Tabulated
from ._trained import (
    CHEAPER,
    CLOSED,
    DATA_SET_COLOURS,
    DATA_SET_LABELS,
    DATA_SETS,
    DataSet,
    FRESH,
    legend_entry,
    MOST,
    TRAINED,
    training_footprint,
)
from ._variants import (
    _AbstractVariants,
    check_sigmas,
    compute_variant,
    SCHEMA,
    variant_inputs,
    variant_rows,
)


# A cell: a data set and either M offline copies or "online".
Variant = int | Literal["online"]
_ONLINE = dict(marker="*", ls="", ms=11)
_FILLED, _HOLLOW = dict(mec="black", mew=0.5), dict(mfc="white")
CHEAPERFRESH = dict(marker="^", ls=":", ms=3)


@dataclasses.dataclass(frozen=True)
class ZenoTrainingCopies(_AbstractVariants):
    r"""Trains the min-norm shallow ReLU denoisers of [Z] (Sections 2 and 6;
    docs/models.md#trained-networks) on $N$ orthogonal points $x_n = L e_n$ in $d$
    dimensions, without the origin (the closed form $h^*_\rho$ only bounds the minimum
    from above; a cheaper interpolant is known) and with it (the closed form is the
    minimum-norm interpolant of the noise balls), once per number $M$ of fixed noisy
    copies per point (**offline**) and once with $M$ fresh copies at every Adam step
    (**online**), by the augmented Lagrangian ([`jaxflow.training.train_min_norm`][];
    online it is a quadratic penalty, having no fixed copy for the multipliers). The
    copies are nested: the first $M$ copies are the same for every larger $M$, and every
    variant starts from the same key. The theory's object is the interpolant of whole
    balls; $M$ copies constrain less, so as $M$ grows the trained network should approach
    the ball-interpolating minimum: its cost rises toward the closed form's (with the
    origin) or the cheaper interpolant's (without), and its distance to that function
    shrinks.

    Each variant is compared with the closed form and the cheaper interpolant fitted to
    its own copies' extent ($\hat\rho = \max |u_k \cdot (y_{nm} - x_n)|$, $\rho'$ along
    the cheaper interpolant's directions; both references interpolate every copy and rise
    with $M$ as the extent grows), at the sums of one to four training points (the
    vertices whose stability [Z]'s theorems are about) and on `fresh` new copies per point,
    the same for every variant. [Z] states neither $M$ nor whether it trains online; this
    preset is not an experiment of the paper but measures how far its trained networks can
    be from the function its theorems describe (docs/conventions.md#zeno-training-copies).

    !!! note
        What it does not show: the flows of these networks, virtual-point stability,
        levels outside the closed form's range, weight decay or dropout
        (`zeno-training-ablation`), or sizes beyond $d = N = 8$. With $M = 1$ copy
        ($N M \le d + 1$ points) the free affine part interpolates at nearly zero cost: a
        degenerate end of the sweep, not a trained ReLU network.

    *Defaults*: $d = N = 8$, $L = 1$, levels $\sigma \in \{0.1, 0.05, 0.025\}$ (inside
    the closed form's range, $2\hat\rho < L$, for every $M$), $K = 64$,
    $M \in \{1, 2, 4, 8, 16, 32\}$ and online with $M = 8$ per step, at most 40 000 Adam
    steps per level (the library's training settings), 32 fresh copies per point,
    float64; both data sets. Measured on the 2-core CPU: 120 s of CPU time for the 14
    cells, 3 min 48 s of wall time with other jobs on the cores (load average 5-6), 8-29 s
    per cell, the most copies and online the slowest; a second run loads every cell from
    the training cache in about 20 s.

    *Measured at the defaults* (what comes out, not what the theory promises): without
    the origin the trained cost rises toward the cheaper interpolant's as $M$ grows, at
    0.18-0.36 of it for $M = 2$, 0.52-0.84 for $M = 8$ and 0.92-1.04 for $M = 32$
    (online, 8 per step: 0.77-0.86), and the distance to it at the subset sums falls from
    1.2-1.4 to 0.8-1.4, while the distance to the closed form stays at 1.3-1.8 for every
    $M \ge 2$. With the origin the cost rises from 0.23-0.38 of the closed form's to
    0.5-1.3, but for $M \ge 16$ most levels stop short of interpolating to $10^{-3}$
    within 40 000 steps (largest residual $1$-$4 \times 10^{-3}$) and the lower levels
    cost 1.03-1.32 times the minimum: not at it; their distance to the closed form stays
    at 1.0-1.8. The fresh residual falls with $M$ (0.2-0.9 at $M = 1$ to 0.03-0.25 at $M = 32$).

    **Cells:** one per data set and variant (`without-origin-M8`, `with-origin-online`,
    ...): the levels of one variant trained in one compiled program, or loaded from the
    shared training cache (docs/conventions.md#training-cache); the wall time of each
    call and whether it loaded are saved in `arrays.npz` (`<cell>_train_seconds`,
    `<cell>_from_cache`), not in the table.

    **Rows**, one per variant and level: `data_set`, `reference` (`minimum` or `upper
    bound`: what the closed form is for this data set), `variant` (the cell's name), what
    varies between variants (`method`, `copies` $M$ (per step when `online`), `online`,
    `weight_decay`, `dropout`), the sizes (`d`, `n` (training points, the origin
    included), `length`, `width`, `steps`, `fresh`, `seed`), `level`, `sigma`,
    `steps_taken`, `residual_train` (the largest $|h(y_{nm}) - x_n|$ on the training
    copies; online, on a fixed draw of $M$), `mse_train` (the mean squared residual there,
    $\frac{1}{NM}\sum_{nm} |h(y_{nm}) - x_n|^2$, the term weight decay trades against
    the cost), `residual_fresh` (on the fresh copies),
    `cost` (rebalanced, $\sum_k |a_k||w_k|$), `cost_raw` (as trained), `rho_hat`,
    `closed_form_valid` ($2\hat\rho < \min L$), `closed_form_cost` (the ramp form at
    $\hat\rho$, $\sum_k 2L_k / (L_k - 2\hat\rho)$), `cheaper_cost` (without the origin,
    where both exist: $2NL / (L\sqrt{N/(N-1)} - 2\rho')$), `cost_ratio` and
    `cheaper_ratio` (`cost` over each), `distance_sums`, `distance_fresh`,
    `cheaper_distance_sums`, `cheaper_distance_fresh` (the largest
    $|h(y) - \mathrm{reference}(y)|$ over the sums of one to four training points and over
    the fresh copies).

    **Figures:** `cost` (per level: the trained cost against $M$, log axis, with the
    online result as a star at its $M$ per step, and the two references at $\hat\rho$;
    below, the ratio of the trained cost to the closed form's (with the origin) and to the
    cheaper interpolant's (without), with 1 and 1.1 marked), `distance` (per level: the
    distance to the closed form and to the cheaper interpolant at the subset sums and on
    the fresh copies against $M$), `residual` (per level: the largest residual on the
    training and the fresh copies against $M$).
    """

    name: ClassVar[str] = "zeno-training-copies"
    summary: ClassVar[str] = (
        "[Z] Secs. 2, 6: trained min-norm ReLU denoisers against the number of noisy copies M "
        "(offline) and online: cost and distance to the closed form and a cheaper interpolant"
    )
    schema: ClassVar[pa.Schema] = SCHEMA
    summary_columns: ClassVar[tuple[str, ...]] = (
        "data_set",
        "variant",
        "sigma",
        "residual_train",
        "cost",
        "closed_form_cost",
        "cheaper_cost",
        "distance_sums",
        "cheaper_distance_sums",
    )
    # The lists of variants and data sets choose cells; each cell depends on its own M.
    cell_independent: ClassVar[frozenset[str]] = frozenset(
        {"data_sets", "copies", "online", "cache"}
    )

    data_sets: tuple[DataSet, ...] = param(
        DATA_SETS,
        "data sets: with-origin ({0, x_1, ..., x_N}: the closed form is the minimum) and/or "
        "without-origin (the N points: it is an upper bound, a cheaper interpolant exists).",
        distinct=True,
    )
    copies: tuple[int, ...] = param(
        (1, 2, 4, 8, 16, 32),
        "M, fixed noisy copies per point, one variant each (nested: the first M copies are "
        "shared).",
        rule=at_least(1),
        distinct=True,
        nonempty=False,
    )
    online: bool = param(True, "also train online: fresh copies at every Adam step.")
    online_copies: int = param(
        8, "M for online training: fresh copies per point at each step.", rule=at_least(1)
    )

    def check(self) -> None:
        if self.n > self.d:
            raise ValueError(f"n={self.n}, d={self.d}: need n <= d.")
        check_sigmas(self.sigmas)
        if not self.copies and not self.online:
            raise ValueError("copies is empty and online=false: nothing to train.")
        self.training(self.online_copies, online=False)  # its own checks

    def quick(self) -> "ZenoTrainingCopies":
        return dataclasses.replace(
            self,
            d=3,
            n=3,
            data_sets=("without-origin",),
            sigmas=(0.15, 0.1),
            copies=(2,),
            online_copies=2,
            width=16,
            # Steps are cheap at this size (compiling each variant is what costs), and the
            # same as zeno-training-ablation's quick run: its augmented Lagrangian is this
            # M = 2 cell, loaded from the training cache.
            steps=10_000,
            inner_steps=100,
            fresh=4,
        )

    def footprint(self) -> Footprint:
        per_call, stored = training_footprint(
            self, copies=max(self.copies + (self.online_copies,)), levels=len(self.sigmas)
        )
        cells = len(self.cells())
        return Footprint(
            memory=2 * per_call + cells * stored,
            disk=4 * cells * stored,
            set_by=("copies", "online_copies", "width", "n", "d", "steps"),
        )

    def variants(self) -> tuple[Variant, ...]:
        return tuple(self.copies) + (("online",) if self.online else ())

    def cells(self) -> tuple[tuple[DataSet, Variant], ...]:
        return tuple((data_set, v) for data_set in self.data_sets for v in self.variants())

    def cell_name(self, cell: tuple[DataSet, Variant]) -> str:
        data_set, variant = cell
        return f"{data_set}-{'online' if variant == 'online' else f'M{variant}'}"

    def training(self, copies: int, *, online: bool) -> MinNormTraining:
        """The training settings of one variant."""
        return MinNormTraining(
            width=self.width,
            copies=copies,
            steps=self.steps,
            inner_steps=self.inner_steps,
            tol=self.tol,
            online=online,
        )

    def prepare(self, *, progress: bool) -> bool:
        return progress

    def compute(self, cell: tuple[DataSet, Variant], context: bool) -> dict[str, np.ndarray]:
        data_set, variant = cell
        online = variant == "online"
        m = self.online_copies if online else int(variant)
        inputs = variant_inputs(
            self.seed,
            data_set,
            n=self.n,
            d=self.d,
            length=self.length,
            sigmas=self.sigmas,
            copies=m,
            fresh=self.fresh,
            dtype=self.dtype,
        )
        config = self.training(m, online=online)
        return compute_variant(config, data_set, inputs, cache=self.cache, progress=context)

    def tabulate(self, outputs: Mapping[tuple[DataSet, Variant], Arrays]) -> Tabulated:
        rows, arrays = [], {}
        for cell in self.cells():
            data_set, variant = cell
            name = self.cell_name(cell)
            online = variant == "online"
            fixed = {
                "data_set": data_set,
                "variant": name,
                "d": self.d,
                "length": self.length,
                "width": self.width,
                "steps": self.steps,
                "fresh": self.fresh,
                "seed": self.seed,
            }
            varying = {
                "method": "augmented_lagrangian",
                "copies": self.online_copies if online else int(variant),
                "online": online,
                "weight_decay": 0.0,
                "dropout": 0.0,
            }
            rows += variant_rows(outputs[cell], fixed, varying)
            for key in ("train_seconds", "from_cache"):
                arrays[f"{name}_{key}"] = outputs[cell][key]
        return Tabulated(rows, arrays)

    def figures(self, table: pa.Table, arrays: Mapping[str, np.ndarray]) -> dict[str, Figure]:
        del arrays
        rows = table.to_pylist()
        names = list(dict.fromkeys(r["data_set"] for r in rows))
        sigmas = sorted({r["sigma"] for r in rows}, reverse=True)
        first = rows[0]
        n = first["n"] - (first["data_set"] == "with-origin")
        title = (
            f"d = {first['d']}, N = {n} orthogonal points, K = {first['width']}, at most "
            f"{first['steps']:,} Adam steps per level; measured on {first['fresh']} fresh "
            "copies per point"
        )

        def series(name, sigma, key, online):
            sub = sorted(
                (
                    r
                    for r in rows
                    if r["data_set"] == name and r["sigma"] == sigma and r["online"] == online
                ),
                key=lambda r: r["copies"],
            )
            x = np.array([r["copies"] for r in sub], float)
            y = np.array([np.nan if r[key] is None else r[key] for r in sub], float)
            return x, y

        def draw(ax, name, sigma, key, style, online=None):
            # The online variant as a star at its M per step (filled or hollow: `online`).
            colour = DATA_SET_COLOURS[name]
            x, y = series(name, sigma, key, False)
            if np.isfinite(y).any():
                ax.plot(x, y, color=colour, **style)
            if online is not None:
                x, y = series(name, sigma, key, True)
                ax.plot(x, y, color=colour, **_ONLINE, **online)

        ticks = sorted({r["copies"] for r in rows})

        def axis(ax, sigma, ylabel, log=True):
            ax.set_xscale("log", base=2)
            ax.set_xticks(ticks, [str(m) for m in ticks])
            ax.minorticks_off()
            if log:
                ax.set_yscale("log")
            ax.set_xlabel("noisy copies per point $M$")
            ax.set_ylabel(ylabel)
            ax.set_title(rf"$\sigma$ = {sigma:g}", fontsize=10)
            ax.grid(alpha=0.3)

        def legend(fig, entries, online):
            handles = [
                Line2D([], [], color=DATA_SET_COLOURS[n], lw=2, label=DATA_SET_LABELS[n])
                for n in names
            ]
            handles += [legend_entry(label, s) for label, s in entries]
            handles += [legend_entry(label, _ONLINE, **fill) for label, fill in online]
            fig.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=8)

        out = {}
        fig, axes = plot.figure(len(sigmas), 2, width=4.2, height=3.4)
        for j, sigma in enumerate(sigmas):
            ax = axes[0, j]
            for name in names:
                draw(ax, name, sigma, "cost", TRAINED, _FILLED)
                draw(ax, name, sigma, "closed_form_cost", CLOSED)
                draw(ax, name, sigma, "cheaper_cost", CHEAPER)
            # Linear: M = 1 (an affine fit, cost ~0) would otherwise set the scale.
            axis(ax, sigma, r"cost $C$ (rebalanced)", log=False)
            ax.set_ylim(bottom=0)
            ax = axes[1, j]
            for name in names:
                key = "cheaper_ratio" if name == "without-origin" else "cost_ratio"
                draw(ax, name, sigma, key, TRAINED, _FILLED)
            ax.axhline(1.0, color="black", lw=1)
            ax.axhline(1.1, color="black", ls=":", lw=1)
            axis(ax, sigma, "trained cost / minimum's (or cheaper's)", log=False)
        legend(
            fig,
            [
                ("trained", TRAINED),
                (r"closed form at $\hat\rho$", CLOSED),
                (r"cheaper interpolant at $\rho'$", CHEAPER),
            ],
            [("online, M fresh copies per step", _FILLED)],
        )
        fig.suptitle(
            "Cost against the number of noisy copies (below: over the closed form with the "
            "origin, over the cheaper interpolant without; 1.1 dotted)\n" + title,
            fontsize=9,
        )
        out["cost"] = fig

        fig, axes = plot.figure(len(sigmas), width=4.2, height=3.6)
        for j, sigma in enumerate(sigmas):
            ax = axes[0, j]
            for name in names:
                draw(ax, name, sigma, "distance_sums", TRAINED, _FILLED)
                draw(ax, name, sigma, "distance_fresh", FRESH)
                draw(ax, name, sigma, "cheaper_distance_sums", CHEAPER, _HOLLOW)
                draw(ax, name, sigma, "cheaper_distance_fresh", CHEAPERFRESH)
            axis(ax, sigma, r"largest $|h(y) - \mathrm{reference}(y)|$", log=False)
            ax.set_ylim(bottom=0)
        legend(
            fig,
            [
                (f"closed form, at the sums of 1-{MOST} points", TRAINED),
                ("closed form, on fresh copies", FRESH),
                (f"cheaper interpolant, at the sums of 1-{MOST} points", CHEAPER),
                ("cheaper interpolant, on fresh copies", CHEAPERFRESH),
            ],
            [
                ("online: closed form, at the sums", _FILLED),
                ("online: cheaper interpolant, at the sums", _HOLLOW),
            ],
        )
        fig.suptitle(
            "How far the trained networks are from the references, against the number of "
            "noisy copies (online: star)\n" + title,
            fontsize=9,
        )
        out["distance"] = fig

        fig, axes = plot.figure(len(sigmas), width=4.2, height=3.6)
        for j, sigma in enumerate(sigmas):
            ax = axes[0, j]
            for name in names:
                draw(ax, name, sigma, "residual_train", TRAINED, _FILLED)
                draw(ax, name, sigma, "residual_fresh", FRESH, _HOLLOW)
            axis(ax, sigma, r"largest residual $|h(y) - x_n|$")
        legend(
            fig,
            [
                ("training copies", TRAINED),
                ("fresh copies", FRESH),
            ],
            [("online: training draw", _FILLED), ("online: fresh copies", _HOLLOW)],
        )
        fig.suptitle("Residual against the number of noisy copies\n" + title, fontsize=9)
        out["residual"] = fig
        return out

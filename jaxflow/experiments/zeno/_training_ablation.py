r"""The training ablations of [Z] on its min-norm denoisers: weight decay at several
strengths and dropout at several rates, beside the augmented Lagrangian."""

import dataclasses
from collections.abc import Mapping
from typing import ClassVar, Literal

import numpy as np
import pyarrow as pa
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ...training import MinNormTraining
from .. import _plotting as plot
from .._params import at_least, param, positive, unit_open
from .._preset import Arrays, Footprint, Tabulated
from ._trained import DataSet, MOST, training_footprint
from ._variants import (
    _AbstractVariants,
    check_sigmas,
    compute_variant,
    SCHEMA,
    variant_inputs,
    variant_rows,
)


# A cell: a data set, a method and its strength ("augmented-lagrangian" has none).
Method = Literal["augmented-lagrangian", "weight-decay", "dropout"]
Cell = tuple[DataSet, Method, float]
_PANELS = (
    ("cost", r"cost $C$ (rebalanced)"),
    ("mse_train", "mean squared residual (training copies)"),
    ("residual_train", "largest residual (training copies)"),
    ("distance_sums", f"distance to the closed form\nat the sums of 1-{MOST} points"),
)


@dataclasses.dataclass(frozen=True)
class ZenoTrainingAblation(_AbstractVariants):
    r"""The training ablations of [Z] (Section 6, its ablation of the training method;
    docs/models.md#trained-networks): the min-norm shallow ReLU denoisers of `zeno-training`
    on $N$ orthogonal points $x_n = L e_n$ (without the origin by default; `data_sets` adds
    the right-angled simplex with it), trained on the same $M$ noisy copies per point from
    the same key three ways ([`jaxflow.training.train_min_norm`][]):

    - the **augmented Lagrangian** (the baseline: minimum cost subject to interpolation);
    - **weight decay**: Adam on the mean squared error plus $\lambda C$, at each
      $\lambda$ of `weight_decays` ([Z]'s ablation uses $\lambda = 0.25$), with no
      interpolation constraint: the larger $\lambda$, the lower the cost and the higher the
      mean squared residual (the two terms it trades; exactly so at the optima), and both
      on their side of the augmented Lagrangian's;
    - **dropout**: the augmented Lagrangian with each hidden unit dropped at each step
      with probability $p$ (inverted dropout), at each $p$ of `dropouts`: one change from
      the baseline at a time.

    Each level is compared with the closed form fitted to the copies' extent
    ($\hat\rho$) and, without the origin, with the cheaper interpolant, at the sums of one
    to four training points and on `fresh` new copies per point, as in
    `zeno-training-copies` (the same keys and nested copies: its $M = 8$ cell and this
    preset's augmented Lagrangian are the same training, shared through the training
    cache). [Z]'s ablation reads the flows of such networks (which endpoints appear); this
    preset shows the networks themselves. [Z] does not say to which training it adds
    dropout.

    !!! note
        What it does not show: the flows and their endpoints (where [Z] sees virtual
        points appear under weight decay and samples leave the hyperbox under dropout),
        virtual-point stability, or the dependence on $M$ (`zeno-training-copies`). At
        these sizes and with the mean-squared-error normalisation of
        [`jaxflow.training.MinNormTraining`][], $\lambda \ge 10^{-2}$ collapses the
        networks to the affine least-squares fit (cost $\approx 0$; the residual then no
        longer changes with $\lambda$), so [Z]'s $\lambda = 0.25$ is far past the collapse
        here; [Z]'s networks, data and loss scaling differ.

    *Defaults*: $d = N = 8$, $L = 1$, without the origin, levels
    $\sigma \in \{0.1, 0.05, 0.025\}$, $K = 64$, $M = 8$, at most 40 000 Adam steps per
    level, $\lambda \in \{10^{-4}, 10^{-3}, 10^{-2}, 0.25\}$,
    $p \in \{0.1, 0.2, 0.4\}$, 32 fresh copies per point, float64
    (docs/conventions.md#zeno-training-ablation). Measured on the 2-core CPU: 79 s of
    CPU time, 113 s of wall time with other jobs on the cores (load average 3-5), every
    cell trained; 7-23 s per cell, dropout the slowest (a random mask at every step).
    The augmented Lagrangian is the same training as `zeno-training-copies`' $M = 8$
    cell and loads from the cache after either.

    *Measured at the defaults*: the cost falls with $\lambda$ from the augmented
    Lagrangian's (19.5, 16.8, 14.5 at the three levels) to 17.4, 11.9, 7.5 at
    $\lambda = 10^{-4}$, 10.2, 5.3, 0.46 at $10^{-3}$ and zero (up to rounding) from
    $10^{-2}$ on, while the mean squared residual rises from $10^{-8}$-$10^{-7}$ to
    $1$-$2 \times 10^{-4}$, $3 \times 10^{-3}$ and $4 \times 10^{-3}$-$6 \times 10^{-2}$
    (equal for all collapsed $\lambda$); at $\lambda = 10^{-5}$ (not a default) 40 000
    steps left the cost above the augmented Lagrangian's at $\sigma = 0.1$ (21.2): so
    weak a decay had not converged. Dropout raises the cost (19.5 to 34.6, 41.9, 54.6 at
    $\sigma = 0.1$ for $p = 0.1, 0.2, 0.4$), leaves a residual of $3 \times 10^{-3}$ to
    $10^{-2}$, and moves the networks away from the closed form at the subset sums (1.8
    to 6.7 at $\sigma = 0.1$).

    **Cells:** one per data set and variant (`without-origin-augmented-lagrangian`,
    `without-origin-weight-decay-0.001`, `without-origin-dropout-0.1`, ...): the levels
    of one variant in one compiled program, or loaded from the shared training cache; the
    wall time of each call and whether it loaded are saved in `arrays.npz`
    (`<cell>_train_seconds`, `<cell>_from_cache`), not in the table.

    **Rows**, one per variant and level, with the columns of `zeno-training-copies`:
    `method` (`augmented_lagrangian` or `weight_decay`), `weight_decay` ($\lambda$; 0
    for the augmented Lagrangian) and `dropout` ($p$) in every row, `copies` $M$,
    `online` (false), the residuals (largest and mean squared), costs, references and
    distances.

    **Figures:** `weight_decay` (cost, mean squared and largest residual on the training
    copies, and distance to the closed form at the subset sums against $\lambda$, log
    axes, one line per level, with
    the augmented Lagrangian's values as horizontal lines), `dropout` (the same against
    $p$, the augmented Lagrangian at $p = 0$).
    """

    name: ClassVar[str] = "zeno-training-ablation"
    summary: ClassVar[str] = (
        "[Z] Sec. 6 ablations: trained min-norm ReLU denoisers with weight decay and dropout "
        "beside the augmented Lagrangian: cost, residual, distance to the closed form"
    )
    schema: ClassVar[pa.Schema] = SCHEMA
    summary_columns: ClassVar[tuple[str, ...]] = (
        "data_set",
        "variant",
        "sigma",
        "residual_train",
        "residual_fresh",
        "cost",
        "closed_form_cost",
        "distance_sums",
    )
    # The lists of variants and data sets choose cells; each cell depends on its own.
    cell_independent: ClassVar[frozenset[str]] = frozenset(
        {"data_sets", "weight_decays", "dropouts", "cache"}
    )

    data_sets: tuple[DataSet, ...] = param(
        ("without-origin",),
        "data sets: without-origin (the N points: the closed form is an upper bound) and/or "
        "with-origin ({0, x_1, ..., x_N}: the closed form is the minimum).",
        distinct=True,
    )
    copies: int = param(8, "M, noisy copies of each training point per level.", rule=at_least(1))
    weight_decays: tuple[float, ...] = param(
        (1e-4, 1e-3, 1e-2, 0.25),
        "lambda, one weight-decay variant each (Adam on the mean squared error + lambda C).",
        rule=positive,
        distinct=True,
        nonempty=False,
    )
    dropouts: tuple[float, ...] = param(
        (0.1, 0.2, 0.4),
        "p, one dropout variant each (the augmented Lagrangian, each unit dropped with "
        "probability p at each step).",
        rule=unit_open,
        distinct=True,
        nonempty=False,
    )

    def check(self) -> None:
        if self.n > self.d:
            raise ValueError(f"n={self.n}, d={self.d}: need n <= d.")
        check_sigmas(self.sigmas)
        if not self.weight_decays and not self.dropouts:
            raise ValueError("weight_decays and dropouts are both empty: nothing to compare.")
        for cell in self.cells():
            self.training(cell)  # its own checks

    def quick(self) -> "ZenoTrainingAblation":
        return dataclasses.replace(
            self,
            d=3,
            n=3,
            sigmas=(0.15, 0.1),
            copies=2,
            weight_decays=(1e-3, 1e-2),
            dropouts=(0.2,),
            width=16,
            # Steps are cheap at this size; the comparison with weight decay needs them
            # (below 10 000, lambda = 1e-3 had not yet brought its cost below the augmented
            # Lagrangian's), and a smaller sigma collapses lambda = 1e-2 to the affine fit,
            # where its residual ties with lambda = 1e-3's.
            steps=10_000,
            inner_steps=100,
            fresh=4,
        )

    def footprint(self) -> Footprint:
        per_call, stored = training_footprint(self, copies=self.copies, levels=len(self.sigmas))
        cells = len(self.cells())
        return Footprint(
            memory=2 * per_call + cells * stored,
            disk=4 * cells * stored,
            set_by=("copies", "width", "n", "d", "steps"),
        )

    def cells(self) -> tuple[Cell, ...]:
        variants: tuple[tuple[Method, float], ...] = (
            ("augmented-lagrangian", 0.0),
            *(("weight-decay", lam) for lam in self.weight_decays),
            *(("dropout", p) for p in self.dropouts),
        )
        return tuple((data_set, m, v) for data_set in self.data_sets for m, v in variants)

    def cell_name(self, cell: Cell) -> str:
        data_set, method, value = cell
        return f"{data_set}-{method}" + ("" if method == "augmented-lagrangian" else f"-{value:g}")

    def training(self, cell: Cell) -> MinNormTraining:
        """The training settings of one variant."""
        _, method, value = cell
        baseline = MinNormTraining(
            width=self.width,
            copies=self.copies,
            steps=self.steps,
            inner_steps=self.inner_steps,
            tol=self.tol,
        )
        if method == "weight-decay":
            return dataclasses.replace(baseline, method="weight_decay", weight_decay=value)
        return dataclasses.replace(baseline, dropout=value)

    def prepare(self, *, progress: bool) -> bool:
        return progress

    def compute(self, cell: Cell, context: bool) -> dict[str, np.ndarray]:
        data_set = cell[0]
        inputs = variant_inputs(
            self.seed,
            data_set,
            n=self.n,
            d=self.d,
            length=self.length,
            sigmas=self.sigmas,
            copies=self.copies,
            fresh=self.fresh,
            dtype=self.dtype,
        )
        config = self.training(cell)
        return compute_variant(config, data_set, inputs, cache=self.cache, progress=context)

    def tabulate(self, outputs: Mapping[Cell, Arrays]) -> Tabulated:
        rows, arrays = [], {}
        for cell in self.cells():
            data_set, method, value = cell
            name = self.cell_name(cell)
            config = self.training(cell)
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
                "method": config.method,
                "copies": self.copies,
                "online": False,
                "weight_decay": value if method == "weight-decay" else 0.0,
                "dropout": config.dropout,
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
            f"d = {first['d']}, N = {n} orthogonal points, K = {first['width']}, "
            f"M = {first['copies']}, at most {first['steps']:,} Adam steps per level"
        )

        def pick(name, sigma, test):
            return [r for r in rows if r["data_set"] == name and r["sigma"] == sigma and test(r)]

        def baseline(r):
            return r["method"] == "augmented_lagrangian" and r["dropout"] == 0

        def column(sub, key):
            return np.array([np.nan if r[key] is None else r[key] for r in sub], float)

        out = {}
        axes_of = {
            "weight_decay": (
                lambda r: r["method"] == "weight_decay",
                r"weight decay $\lambda$",
                "Weight decay against the augmented Lagrangian (horizontal lines)",
            ),
            "dropout": (
                lambda r: r["dropout"] > 0,
                "dropout rate $p$",
                r"Dropout on the augmented Lagrangian (at $p = 0$: without dropout)",
            ),
        }
        for stem, (test, xlabel, heading) in axes_of.items():
            if not any(test(r) for r in rows):
                continue
            fig, axes = plot.figure(2, 2, width=4.6, height=3.4)
            for i, (key, ylabel) in enumerate(_PANELS):
                ax = axes[i // 2, i % 2]
                for j, name in enumerate(names):
                    for k, sigma in enumerate(sigmas):
                        colour, style = plot.series_colour(k), plot.line_style(j)
                        sub = sorted(pick(name, sigma, test), key=lambda r: r[stem])
                        base = pick(name, sigma, baseline)
                        x, y = column(sub, stem), column(sub, key)
                        if stem == "dropout" and base:
                            x = np.concatenate([[0.0], x])
                            y = np.concatenate([column(base, key), y])
                        ax.plot(x, y, color=colour, ls=style, marker="o", ms=4)
                        if stem == "weight_decay" and base and np.isfinite(column(base, key)[0]):
                            ax.axhline(column(base, key)[0], color=colour, ls=":", lw=1.2)
                if stem == "weight_decay":
                    ax.set_xscale("log")
                if key in ("mse_train", "residual_train"):
                    ax.set_yscale("log")
                else:
                    # Linear: a collapsed network's cost is zero up to rounding.
                    ax.set_ylim(bottom=0)
                ax.set_xlabel(xlabel)
                ax.set_ylabel(ylabel)
                ax.grid(alpha=0.3)
            handles = [
                Line2D([], [], color=plot.series_colour(k), lw=2, label=rf"$\sigma$ = {s:g}")
                for k, s in enumerate(sigmas)
            ]
            if len(names) > 1:
                handles += [
                    Line2D([], [], color="grey", ls=plot.line_style(j), label=name)
                    for j, name in enumerate(names)
                ]
            if stem == "weight_decay":
                handles.append(
                    Line2D([], [], color="grey", ls=":", lw=1.2, label="augmented Lagrangian")
                )
            fig.legend(handles=handles, loc="outside lower center", ncols=5, fontsize=8)
            fig.suptitle(f"{heading}\n{title}", fontsize=9)
            out[stem] = fig
        return out

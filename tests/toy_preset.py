"""A small preset that exercises the experiments engine in milliseconds: its cells draw
Gaussian blocks, its table summarises them, its figure is a histogram."""

import dataclasses
import time
from typing import ClassVar

import jax.random as jr
import numpy as np
import pyarrow as pa
from jaxflow.experiments import (
    AbstractPreset,
    Footprint,
    non_negative,
    param,
    positive,
    Tabulated,
    unit_open,
)
from matplotlib.figure import Figure


@dataclasses.dataclass(frozen=True)
class Toy(AbstractPreset):
    """`blocks` cells, each `size` standard normal draws from `fold_in(key(seed), block)`."""

    name: ClassVar[str] = "toy"
    summary: ClassVar[str] = "a toy preset for the engine's tests"
    schema: ClassVar[pa.Schema] = pa.schema(
        [
            ("block", pa.int64()),
            ("mean", pa.float64()),
            ("below", pa.float64()),
            ("seed", pa.int64()),
        ]
    )
    summary_columns: ClassVar[tuple[str, ...]] = ("block", "mean")
    cell_independent: ClassVar[frozenset[str]] = frozenset({"quantile", "bins"})

    blocks: int = param(3, "number of cells", rule=positive)
    size: int = param(1000, "draws per cell", rule=positive)
    quantile: float = param(0.5, "fraction reported below, read by the table only", rule=unit_open)
    bins: int = param(20, "histogram bins, read by the figure only", rule=positive)
    delay: float = param(
        0.0, "seconds each cell sleeps (to stop a run part-way)", rule=non_negative
    )

    def check(self):
        if self.blocks * self.size > 10**12:
            raise ValueError(f"blocks * size must be at most 1e12, got {self.blocks * self.size}.")

    def quick(self):
        return dataclasses.replace(self, blocks=2, size=100)

    def footprint(self):
        return Footprint(16.0 * self.blocks * self.size, 16.0 * self.blocks * self.size, ("size",))

    def cells(self):
        return tuple(range(self.blocks))

    def cell_name(self, cell):
        return f"block{cell}"

    def prepare(self, *, progress: bool):
        del progress
        return jr.key(self.seed)

    def compute(self, cell, context):
        time.sleep(self.delay)
        return {"draws": jr.normal(jr.fold_in(context, cell), (self.size,))}

    def tabulate(self, outputs):
        rows = [
            {
                "block": block,
                "mean": float(np.mean(out["draws"])),
                "below": float(np.quantile(out["draws"], self.quantile)),
                "seed": self.seed,
            }
            for block, out in outputs.items()
        ]
        draws = np.stack([outputs[c]["draws"] for c in self.cells()])
        return Tabulated(rows, {"draws": draws})

    def figures(self, table, arrays):
        fig = Figure(figsize=(4, 3))
        ax = fig.subplots()
        ax.hist(arrays["draws"].ravel(), bins=self.bins)
        ax.set_title(f"seed {self.seed}, means {np.round(table['mean'].to_numpy(), 3)}")
        return {"histogram": fig}

"""The preset contract: a frozen configuration, validated in `__post_init__`, with the
four parts the runner calls: its cells, the computation of one cell, its table and its
figures."""

import abc
import dataclasses
import typing
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np
import pyarrow as pa
from matplotlib.figure import Figure

from ._params import check_field, ConfigError, non_negative, param


Cell = TypeVar("Cell", bound=Hashable)
Context = TypeVar("Context")
Arrays = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Tabulated:
    """What a preset makes of its finished cells.

    **Fields:**

    - `rows`: the tidy table, one dict per row, with exactly the columns of the
      preset's `schema`.
    - `arrays`: named arrays saved beside the table in `arrays.npz`: the inputs needed
      to recompute a result, and whatever the figures draw that the table does not hold.
    """

    rows: list[dict[str, Any]]
    arrays: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Footprint:
    """The largest memory and disk a run needs, estimated before it starts, and the
    parameters that set them (named in the message when they do not fit)."""

    memory: int | float
    disk: int | float
    set_by: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class AbstractPreset(abc.ABC, Generic[Cell, Context]):
    """A reproducible study: a frozen, hashable configuration and what the runner
    ([`jaxflow.experiments.run`][]) needs to compute, tabulate and draw it.

    A preset is host-side and never traced. Its fields are declared with
    [`jaxflow.experiments.param`][] (type, default, help and rule), so the CLI lists
    them, parses `--set key=value` by type, and refuses a bad value in one line before
    any work starts; `__post_init__` checks each field against its declaration, then
    the preset's own `check` for the rules that tie fields together.

    The runner calls, in order:

    1. `cells()`: the keys of the study's independent pieces (hashable, e.g. one
       $\\sigma_{\\max}$ and block of starts, one $(d, \\text{arithmetic})$, one training-set
       size);
    2. `prepare(progress=...)` once, then `compute(cell, context)` for each cell not finished by an
       earlier run: the only part that runs JAX, returning named arrays, each written to
       disk as it finishes;
    3. `tabulate(outputs)`: the rows of the table (typed by `schema`) and the arrays to
       save, from every cell's arrays;
    4. `figures(table, arrays)`: the figures, drawn from the written table and arrays
       alone, so that `jaxflow plot DIR` redraws them without computing.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    # The table's columns and types, and the ones the terminal summary shows.
    schema: ClassVar[pa.Schema]
    summary_columns: ClassVar[tuple[str, ...]]
    # Parameters that no cell depends on (only `tabulate` and `figures` read them):
    # changing one reuses the finished cells of an earlier run.
    cell_independent: ClassVar[frozenset[str]] = frozenset()

    seed: int = param(0, "PRNG seed; the same seed gives the same numbers.", rule=non_negative)

    def __post_init__(self):
        hints = typing.get_type_hints(type(self))
        for field in dataclasses.fields(self):
            value = check_field(self, field, hints[field.name])
            object.__setattr__(self, field.name, value)
        try:
            self.check()
        except ConfigError:
            raise
        except ValueError as e:
            raise ConfigError(str(e)) from None

    @abc.abstractmethod
    def check(self) -> None:
        """Refuse (`ValueError`, one line naming the parameters) a combination of values
        that each pass their own rule but not together."""

    @abc.abstractmethod
    def quick(self) -> "AbstractPreset":
        """A smaller configuration of the same study that finishes in seconds."""

    @abc.abstractmethod
    def footprint(self) -> Footprint:
        """An upper estimate of the memory and disk the run needs."""

    @abc.abstractmethod
    def cells(self) -> Sequence[Cell]:
        """The study's independent pieces, in the order they run."""

    @abc.abstractmethod
    def cell_name(self, cell: Cell) -> str:
        """A short, file-name-safe name of `cell`, unique among the cells."""

    @abc.abstractmethod
    def prepare(self, *, progress: bool) -> Context:
        """What every cell shares (data, a denoiser, compiled functions), made once.
        `progress` says whether the run shows progress bars, for a cell long enough to
        want its own."""

    @abc.abstractmethod
    def compute(self, cell: Cell, context: Context) -> Mapping[str, Any]:
        """The arrays of one cell."""

    @abc.abstractmethod
    def tabulate(self, outputs: Mapping[Cell, Arrays]) -> Tabulated:
        """The table's rows and the saved arrays, from every cell's arrays (host-side)."""

    @abc.abstractmethod
    def figures(self, table: pa.Table, arrays: Mapping[str, np.ndarray]) -> dict[str, Figure]:
        """The figures by file stem, from the written table and arrays alone."""

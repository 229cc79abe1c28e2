import abc
import dataclasses
from pathlib import Path
from typing import Any, ClassVar

from matplotlib.figure import Figure


def param(default: Any, help: str) -> Any:
    """A preset field with a default and the help text that `jaxflow run --help` shows."""
    if isinstance(default, list | dict | set):
        raise TypeError("Preset defaults must be immutable; use a tuple.")
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass(frozen=True)
class Results:
    """What a preset produces: a tidy table and figures.

    **Fields:**

    - `rows`: the tidy table, one dict per cell (e.g. one row per endpoint class and
      configuration); every row carries the config values that vary.
    - `figures`: PNG figures by file stem.
    - `summary`: column names to print in the terminal summary (all if empty).
    - `arrays`: named arrays saved beside the table (`.npz`), so a result can be
      recomputed from its inputs by another implementation.
    """

    rows: list[dict[str, Any]]
    figures: dict[str, Figure] = dataclasses.field(default_factory=dict)
    summary: tuple[str, ...] = ()
    arrays: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class AbstractPreset(abc.ABC):
    """A reproducible experiment: a frozen, hashable configuration and a `run` method.

    Presets are host-side: they are never traced. Subclasses are frozen dataclasses
    whose fields are declared with [`jaxflow.experiments.param`][], so that the CLI can
    list them, parse `--set key=value` by each field's type, and store the full
    configuration beside the results.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    # Parameters that only the cheap final steps use: changing them keeps the finished
    # pieces of a stopped run (see `jaxflow.experiments.Pieces`).
    piece_independent: ClassVar[tuple[str, ...]] = ()

    seed: int = param(0, "PRNG seed; the same seed gives the same numbers.")

    @abc.abstractmethod
    def quick(self) -> "AbstractPreset":
        """A smaller configuration of the same study that finishes in seconds."""

    @abc.abstractmethod
    def run(self, out: Path, *, progress: bool = True) -> Results:
        """Run the study. `out` is the results folder, where a long run keeps its finished
        pieces ([`jaxflow.experiments.Pieces`][]) so that running it again resumes."""

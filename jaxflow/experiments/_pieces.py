"""The finished cells of a run, each kept on disk as it finishes, so that a run that stops
(a crash, a kill, a lost machine) resumes where it stopped."""

import dataclasses
import hashlib
import json
import shutil
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path

import jax
import numpy as np
from tqdm.auto import tqdm

from ._preset import AbstractPreset, Arrays
from ._records import jsonable
from ._store import sibling, write_atomic


def fingerprint(preset: AbstractPreset, *, cells_only: bool = True) -> str:
    """A hash of what a run's results depend on: the preset's name and parameters (but
    its `cell_independent` ones, when `cells_only`), the floating-point mode, the backend
    and the versions of jaxflow and JAX, so that no other configuration or release picks
    up a stale piece."""
    from .. import __version__

    params = {
        k: jsonable(v)
        for k, v in dataclasses.asdict(preset).items()
        if not (cells_only and k in preset.cell_independent)
    }
    record = {
        "preset": preset.name,
        "params": params,
        "x64": bool(jax.config.read("jax_enable_x64")),
        "backend": jax.default_backend(),
        "versions": [__version__, jax.__version__],
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]


class Pieces:
    """The finished cells of one configuration: `OUT`'s sibling folder
    `.OUT.pieces/<fingerprint>/`, one `.npz` per cell.

    A piece is written to a temporary file, flushed to disk and renamed into place, so a
    run killed mid-write leaves no partial piece; a piece that cannot be read (empty,
    truncated, corrupt) is computed again, never fatal.
    """

    def __init__(self, out: Path, preset: AbstractPreset):
        self.root = sibling(out, "pieces")
        self.folder = self.root / fingerprint(preset)

    def load(self, name: str) -> Arrays | None:
        """The piece `name` if a run of the same configuration finished it, else None."""
        path = self.folder / f"{name}.npz"
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as stored:
                return {k: stored[k] for k in stored.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile):
            tqdm.write(f"recomputing {name}: its piece {path} is unreadable", file=sys.stderr)
            return None

    def save(self, name: str, arrays: Mapping[str, np.ndarray]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        write_atomic(self.folder / f"{name}.npz", lambda file: np.savez(file, **arrays))

    def remove(self) -> None:
        """Drop the pieces of a finished run (its results folder holds them now)."""
        shutil.rmtree(self.folder, ignore_errors=True)
        try:
            self.root.rmdir()  # only if no other configuration left pieces there
        except OSError:
            pass

import dataclasses
import hashlib
import json
import os
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import jax
import numpy as np
from jaxtyping import ArrayLike
from tqdm.auto import tqdm

from ._base import AbstractPreset


def pieces_folder(out: Path, preset: AbstractPreset) -> Path:
    """Where a run of `preset` keeps its finished pieces: `out/pieces/<fingerprint>`.

    The fingerprint hashes the preset's name and parameters (but its
    `piece_independent` ones, which the pieces do not depend on), the floating-point
    mode, the backend and the versions of jaxflow and JAX, so that no other
    configuration or release picks up a stale piece."""
    from .. import __version__
    from ._io import jsonable

    params = {
        k: jsonable(v)
        for k, v in dataclasses.asdict(preset).items()
        if k not in preset.piece_independent
    }
    record = {
        "preset": preset.name,
        "params": params,
        "x64": bool(jax.config.read("jax_enable_x64")),
        "backend": jax.default_backend(),
        "versions": [__version__, jax.__version__],
    }
    digest = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()
    return Path(out) / "pieces" / digest[:16]


def remove_pieces(out: Path, preset: AbstractPreset) -> None:
    """Drop a finished run's pieces (its results folder now holds the results)."""
    folder = pieces_folder(out, preset)
    shutil.rmtree(folder, ignore_errors=True)
    try:
        folder.parent.rmdir()  # only if no other configuration left pieces there
    except OSError:
        pass


class Pieces:
    """The finished pieces of a long run, written to disk as each one finishes, so that a
    run that stops (a crash, a kill, a lost machine) resumes where it stopped.

    `pieces(name, compute)` returns the piece `name` from disk if a run with the same
    configuration finished it before; otherwise it calls `compute()` (which returns named
    arrays), writes the result and returns it. A piece is written to a temporary file
    and renamed into place, so a run killed mid-write leaves no partial piece; an
    unreadable piece is computed again. The presets call this once per costly cell of
    their sweep (a training-set size, a dimension and arithmetic, a block of starts at
    one noise level), and [`jaxflow.experiments.write_results`][] drops the pieces once
    the results are written.

    A preset's `piece_independent` names the parameters that only its cheap final steps
    use (a confidence level, the bootstrap size): changing them keeps the pieces.

    **Arguments:**

    - `out`: the run's results folder.
    - `preset`: the configuration being run.
    """

    def __init__(self, out: Path, preset: AbstractPreset):
        self.folder = pieces_folder(out, preset)
        self.resumed: list[str] = []

    def __call__(
        self, name: str, compute: Callable[[], Mapping[str, ArrayLike]]
    ) -> dict[str, np.ndarray]:
        path = self.folder / f"{name}.npz"
        if path.exists():
            try:
                with np.load(path, allow_pickle=False) as stored:
                    piece = {k: stored[k] for k in stored.files}
            except (OSError, ValueError, zipfile.BadZipFile):
                pass
            else:
                self.resumed.append(name)
                tqdm.write(f"resumed {name} from {path}", file=sys.stderr)
                return piece
        piece = {k: np.asarray(v) for k, v in compute().items()}
        self.folder.mkdir(parents=True, exist_ok=True)
        # A unique temporary name: two runs of one configuration may write at once.
        handle, partial = tempfile.mkstemp(suffix=".npz", prefix=f".{name}.", dir=self.folder)
        with os.fdopen(handle, "wb") as file:
            np.savez(file, **piece)
        os.replace(partial, path)
        return piece

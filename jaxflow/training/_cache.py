import hashlib
import json
import os
import warnings
from pathlib import Path

import equinox as eqx
import jax
import jax.random as jr
import numpy as np

from .._distributed import in_every_process
from .._files import write_atomic


def default_cache_dir() -> Path:
    """`$JAXFLOW_CACHE/training` when `JAXFLOW_CACHE` is set, else
    `~/.cache/jaxflow/training` (docs/conventions.md#training-cache)."""
    root = os.environ.get("JAXFLOW_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "jaxflow") / "training"


def _array_digest(h, name: str, x) -> None:
    if x is None:
        h.update(f"{name}:none;".encode())
        return
    if jax.dtypes.issubdtype(getattr(x, "dtype", None), jax.dtypes.prng_key):
        x = jr.key_data(x)
    a = np.ascontiguousarray(np.asarray(x))
    h.update(f"{name}:{a.dtype.str}:{a.shape};".encode())
    h.update(a.tobytes())


def configuration(points, sigmas, config, key, copies) -> tuple[dict, str]:
    """The JSON configuration of a training run and its SHA-256 hash: everything that
    decides the networks (inputs, settings, key, the versions of jax and jaxflow)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        jaxflow_version = version("jaxflow")
    except PackageNotFoundError:  # pragma: no cover - a source checkout
        jaxflow_version = "unknown"
    h = hashlib.sha256()
    for name, x in (("points", points), ("sigmas", sigmas), ("copies", copies), ("key", key)):
        _array_digest(h, name, x)
    inputs = h.hexdigest()
    record = {
        "config": config.to_json(),
        "inputs_sha256": inputs,
        "shape": {"levels": int(np.shape(sigmas)[0]), "n_d": list(np.shape(points))},
        "sigmas": [float(s) for s in np.asarray(sigmas)],
        "dtype": str(np.asarray(points).dtype),
        "jax": jax.__version__,
        "jaxflow": jaxflow_version,
        "backend": jax.default_backend(),
    }
    digest = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()
    return record, digest


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _load(stem: Path, digest: str, like):
    """The cached stack, or `None` with a reason when it is absent or damaged."""
    meta_path, leaves_path = stem.with_suffix(".json"), stem.with_suffix(".eqx")
    if not meta_path.exists() or not leaves_path.exists():
        return None, None
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as e:
        return None, f"its configuration {meta_path} is unreadable ({e})"
    if meta.get("hash") != digest:
        return None, f"{meta_path} records hash {meta.get('hash')!r}, expected {digest}"
    size = leaves_path.stat().st_size
    if size != meta.get("size"):
        return None, f"{leaves_path} has {size} bytes, {meta.get('size')} were written (truncated?)"
    if _file_sha256(leaves_path) != meta.get("sha256"):
        return None, f"{leaves_path} does not match its recorded SHA-256 (corrupt)"
    try:
        return eqx.tree_deserialise_leaves(leaves_path, like), None
    except Exception as e:  # noqa: BLE001 - any failure to read means "train again"
        return None, f"{leaves_path} could not be read ({type(e).__name__}: {e})"


def cached_train(record: dict, digest: str, cache, *, like, train):
    """The stack of configuration `record` (hash `digest`) from the cache folder `cache`
    (`True`: the default one), or `train()`'s, written there. `like` is the structure
    to read back into.

    In a run of several processes each reads its own cache folder (one shared folder, or
    one per host), and the stack is loaded only if every process has it: training splits
    the levels over every process, so all train or none. Each then writes the trained
    stack (bitwise the same in every process) to its folder.
    """
    folder = default_cache_dir() if cache is True else Path(cache)
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / digest
    fit, problem = _load(stem, digest, like)
    if in_every_process(fit is not None):
        return fit
    if problem is not None:
        warnings.warn(
            f"Refusing the cached training stack: {problem}; training it again.", stacklevel=3
        )
    fit = train()
    leaves_path = stem.with_suffix(".eqx")
    write_atomic(leaves_path, lambda f: eqx.tree_serialise_leaves(f, fit))
    record = dict(record, hash=digest, size=leaves_path.stat().st_size)
    record["sha256"] = _file_sha256(leaves_path)
    text = json.dumps(record, indent=2, sort_keys=True).encode()
    write_atomic(stem.with_suffix(".json"), lambda f: f.write(text))
    return fit

"""Files that are never seen half-written: atomic writes, a lock per results folder, and
the swap of a finished folder into place."""

import contextlib
import ctypes
import errno
import fcntl
import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

from .._files import fsync_dir as _fsync_dir, write_atomic as write_atomic
from ._params import ConfigError


def sibling(out: Path, kind: str) -> Path:
    """A hidden path beside the results folder `out`: `.NAME.kind`."""
    out = Path(out)
    return out.parent / f".{out.name}.{kind}"


@contextlib.contextmanager
def locked(out: Path) -> Iterator[None]:
    """Hold the lock of results folder `out` (a file beside it): a second run into the same
    folder is refused at once instead of interleaving its files. The operating system
    releases the lock when the process dies, so a killed run never leaves it held."""
    path = sibling(out, "lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(
                f"--out {out}: another jaxflow run is writing this folder; wait for it "
                "to finish or choose another --out."
            ) from None
        try:
            yield
        finally:
            fcntl.flock(file, fcntl.LOCK_UN)


def check_out(out: Path, marker: str = "config.json") -> None:
    """Refuse, before any work, a results folder that cannot be written: a path that is a
    file, a parent that cannot be created or written, or an existing folder that holds
    something other than jaxflow results (it will be replaced as a whole)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a folder; choose a folder path.")
    if out.is_dir() and any(out.iterdir()) and not (out / marker).exists():
        raise ConfigError(
            f"--out {out}: the folder holds files that are not jaxflow results, and a run "
            "replaces its folder whole; choose a new or empty folder."
        )
    parent = out.resolve().parent
    existing = parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"--out {out}: {existing} is not a folder; choose another path.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out}: {existing} is not writable; choose another path.")


def staging(out: Path) -> Path:
    """A fresh folder beside `out` to write a run's results in before they replace `out`."""
    folder = sibling(out, f"staging-{uuid.uuid4().hex[:12]}")
    folder.mkdir(parents=True)
    return folder


def clear_leftovers(out: Path) -> None:
    """Remove what killed runs left beside `out` (unfinished staging folders, swapped-out
    old results); call with the lock held."""
    out = Path(out)
    for path in out.parent.glob(f".{out.name}.staging-*"):
        shutil.rmtree(path, ignore_errors=True)
    for path in out.parent.glob(f".{out.name}.old-*"):
        shutil.rmtree(path, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux `renameat2(RENAME_EXCHANGE)`); False where the
    platform or file system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    if result == 0:
        return True
    if ctypes.get_errno() in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()), str(b))


def publish(folder: Path, out: Path) -> None:
    """Put the finished `folder` in the place of `out` so that `out` is, at every moment,
    either the whole old results or the whole new ones (an atomic swap where the
    platform allows, two renames elsewhere), then remove the old results."""
    folder, out = Path(folder), Path(out)
    _fsync_dir(folder)
    if not out.exists():
        os.rename(folder, out)
    elif _exchange(folder, out):
        old = sibling(out, f"old-{uuid.uuid4().hex[:12]}")
        os.rename(folder, old)
        shutil.rmtree(old, ignore_errors=True)
    else:
        old = sibling(out, f"old-{uuid.uuid4().hex[:12]}")
        os.rename(out, old)
        os.rename(folder, out)
        shutil.rmtree(old, ignore_errors=True)
    _fsync_dir(out.parent)

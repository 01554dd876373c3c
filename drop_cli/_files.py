"""Writing outputs so that nothing is lost, in one place.

Every file goes to a temporary name in its own folder (``.<name>.<pid>.tmp``), is flushed to the disk
and renamed over its final name only once complete, so a reader never sees half a file and a kill at
any moment leaves the previous version (or nothing) under the final name. An OSError on the way (no
space left, a read-only or permission-denied folder, a file where a folder should be) becomes one
DiskError line naming the path; the temporary is removed on any failure, and the temporaries of killed
processes (their pid no longer running) are removed by the next write of the same file.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

from .errors import DiskError

_REASONS = {
    errno.ENOSPC: ("no space left on the device", "Free some space there, or write somewhere else."),
    errno.EDQUOT: ("the disk quota is exceeded", "Free some space there, or write somewhere else."),
    errno.EROFS: ("the file system is read-only", "Write to a folder you can write to."),
    errno.EACCES: ("permission denied", "Write to a folder you can write to."),
    errno.EPERM: ("permission denied", "Write to a folder you can write to."),
    errno.ENOTDIR: ("a file is where a folder should be", "Move that file away, or choose another path."),
    errno.EEXIST: ("a file is where a folder should be", "Move that file away, or choose another path."),
    errno.EISDIR: ("it is a folder", "Give the path of a file, not of a folder."),
}


def output_error(path: str | Path, error: OSError, verb: str = "write") -> DiskError:
    """The one line for an OSError met while writing ``path``."""
    reason, hint = _REASONS.get(error.errno or 0, (error.strerror or type(error).__name__, None))
    return DiskError(f"cannot {verb} {path}: {reason}.", hint=hint, errno=error.errno)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def stale_temporaries(path: Path) -> list[Path]:
    """Temporaries of ``path`` left by processes that are no longer running."""
    out = []
    for candidate in path.parent.glob(f".{path.name}.*.tmp*"):
        pid = candidate.name[len(path.name) + 2 :].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _running(int(pid)):
            out.append(candidate)
    return out


def prepare_folder(folder: Path) -> None:
    """``folder`` made (with its parents) if missing: one line if that is impossible."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise output_error(folder, e, "create the folder") from None
    if not folder.is_dir():
        raise output_error(folder, OSError(errno.ENOTDIR, "not a folder"), "create the folder")


@contextlib.contextmanager
def atomic_path(path: str | Path, *, suffix: str = "") -> Iterator[Path]:
    """Yields the temporary path to write ``path``'s content to (``suffix`` for writers that insist on
    an extension); on leaving the block it is flushed and renamed to ``path``."""
    path = Path(path)
    prepare_folder(path.parent)
    if path.is_dir():
        raise output_error(path, OSError(errno.EISDIR, "is a folder"))
    for stale in stale_temporaries(path):
        stale.unlink(missing_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{suffix}")
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise output_error(path, e) from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode())

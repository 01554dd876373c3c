"""Writing outputs so that nothing is lost, in one place.

Every file goes to a temporary name in its own folder (``.<name>.<pid>.tmp``), is flushed to the disk
and renamed over its final name only once complete, so a reader never sees half a file and a kill at
any moment leaves the previous version (or nothing) under the final name. An OSError on the way (no
space left, a read-only or permission-denied folder, a file where a folder should be) becomes one
DiskError line naming the path; the temporary is removed on any failure, and the temporaries of killed
processes (their pid no longer running) are removed by the next write of the same file.

An output that takes long to make (a labels or features file, a run folder) is locked while it is
made (`output_lock`): a second run on it refuses in one line naming the first.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import io
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from .errors import DiskError, DropError

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


def sha256_file(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, read in 1 MB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


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


def ensure_space(output: Path, needed: int) -> None:
    """Refuse, before writing ``output``, when its folder has less than ``needed`` bytes free. HDF5
    does not report a full disk reliably (the write fails in a destructor, a later flush can crash the
    process), so the final labels and features files check first."""
    prepare_folder(output.parent)
    free = shutil.disk_usage(output.parent).free
    if free < needed:
        raise DiskError(
            f"cannot write {output}: it needs about {needed / 2**20:,.0f} MB and {free / 2**20:,.0f} MB are free.",
            hint="Free some space there (finished blocks are kept), or write somewhere else.",
            errno=errno.ENOSPC,
        )


def folder_bytes(folder: Path) -> int:
    """The size of the files directly in ``folder``."""
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


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


def write_csv(path: str | Path, rows: list[dict]) -> Path:
    """``rows`` as CSV with a header; the columns are every key of any row, in first-seen order."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
    writer.writeheader()
    writer.writerows(rows)
    return write_text(path, text.getvalue())


def _lock_owner(lock: Path) -> dict | None:
    try:
        owner = json.loads(lock.read_text())
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) and isinstance(owner.get("pid"), int) else None


def _held(lock: Path) -> dict | None:
    """The owner of an existing lock that still holds it; None for a stale lock (its process is gone)."""
    owner = _lock_owner(lock)
    if owner is None:  # being written right now, or damaged: held for a few seconds, then stale
        try:
            young = time.time() - lock.stat().st_mtime < 10
        except OSError:
            return None
        return {"pid": "?", "command": "?"} if young else None
    return owner if owner["pid"] != os.getpid() and _running(owner["pid"]) else None


@contextlib.contextmanager
def output_lock(lock: Path, output: Path) -> Iterator[None]:
    """Hold the file ``lock`` (this process's pid and command) while ``output`` is made."""
    prepare_folder(lock.parent)
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _held(lock)
            if owner is not None:
                raise DropError(
                    f"{output} is being made by another process (pid {owner['pid']}: {owner.get('command', '?')}).",
                    hint=f"Wait for it to finish, or choose another output (a stale {lock} may be deleted).",
                ) from None
            lock.unlink(missing_ok=True)
            continue
        except OSError as e:
            raise output_error(lock, e) from None
        with os.fdopen(fd, "w") as f:
            json.dump({"pid": os.getpid(), "command": " ".join(sys.argv)}, f)
        break
    else:
        raise DropError(f"cannot lock {output}: {lock} keeps coming back.", hint="Delete it and run again.")
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)

"""Writing outputs (drop_cli._files): complete or not at all, one line for every disk fault, no
temporary left behind, and the temporaries of killed processes cleaned up by the next write.

Disk faults are injected (the tests may run as root, whom a read-only folder does not stop)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from drop_cli import _files, api
from drop_cli.errors import DropError
from drop_cli.train.checkpoint import save_checkpoint
from drop_cli.viz.output import save_png


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name)


def failing_write(code: int):
    """A Path.write_bytes that writes half of the data and then fails with ``code``."""

    def write(self, data):
        with open(self, "wb") as f:
            f.write(data[: len(data) // 2])
        raise OSError(code, os.strerror(code))

    return write


def test_a_write_is_complete_and_leaves_no_temporary(tmp_path):
    path = _files.write_text(tmp_path / "deep" / "out.txt", "hello")
    assert path.read_text() == "hello" and leftovers(path.parent) == []


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (errno.ENOSPC, "no space left on the device"),
        (errno.EROFS, "the file system is read-only"),
        (errno.EACCES, "permission denied"),
        (errno.EDQUOT, "the disk quota is exceeded"),
    ],
)
def test_a_failed_write_is_one_line_and_keeps_the_old_file(tmp_path, monkeypatch, code, reason):
    path = tmp_path / "out.txt"
    path.write_text("old")
    monkeypatch.setattr(Path, "write_bytes", failing_write(code))
    with pytest.raises(DropError) as error:
        _files.write_text(path, "new content")
    assert error.value.message == f"cannot write {path}: {reason}." and error.value.hint
    assert path.read_text() == "old" and leftovers(tmp_path) == []


def test_a_file_where_the_folder_should_be(tmp_path):
    (tmp_path / "runs").write_text("not a folder")
    with pytest.raises(DropError, match=r"cannot create the folder .*runs.*: a file is where a folder should be"):
        _files.write_text(tmp_path / "runs" / "x" / "out.txt", "x")


def test_a_folder_where_the_file_should_be(tmp_path):
    (tmp_path / "out.png").mkdir()
    with pytest.raises(DropError, match=r"cannot write .*out.png: it is a folder"):
        save_png(torch.zeros(4, 4, 3, dtype=torch.uint8).numpy(), tmp_path / "out.png")
    assert leftovers(tmp_path) == []


def test_a_killed_writer_s_temporary_is_removed_by_the_next_write(tmp_path):
    stale = tmp_path / f".last.pt.{dead_pid()}.tmp"
    alive = tmp_path / f".last.pt.{os.getppid()}.tmp"  # a process still running: maybe writing right now
    other = tmp_path / f".metrics.csv.{dead_pid()}.tmp"  # another file's: not ours to remove
    for path in (stale, alive, other):
        path.write_bytes(b"partial")
    save_checkpoint(tmp_path / "last.pt", model={}, epoch=0)
    assert not stale.exists() and alive.exists() and other.exists()
    assert torch.load(tmp_path / "last.pt", weights_only=True)["epoch"] == 0


def test_a_full_disk_while_saving_a_checkpoint(tmp_path, monkeypatch):
    save_checkpoint(tmp_path / "last.pt", model={}, epoch=0)

    def full(obj, f):
        f.write(b"PK")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(DropError, match="no space left"):
        save_checkpoint(tmp_path / "last.pt", model={}, epoch=1)
    monkeypatch.undo()
    assert torch.load(tmp_path / "last.pt", weights_only=True)["epoch"] == 0 and leftovers(tmp_path) == []


def dead_pid() -> int:
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True).stdout)


def test_a_second_run_on_one_output_refuses_naming_the_first(tmp_path):
    out, lock = tmp_path / "labels.h5", tmp_path / "labels.h5.lock"
    lock.write_text(json.dumps({"pid": os.getppid(), "command": "drop prepare-data synthetic"}))
    with pytest.raises(DropError) as error, _files.output_lock(lock, out):
        pass
    assert error.value.message == (
        f"{out} is being made by another process (pid {os.getppid()}: drop prepare-data synthetic)."
    )
    assert lock.exists(), "the other process's lock is left alone"


def test_a_lock_is_released_and_a_stale_one_taken_over(tmp_path):
    out, lock = tmp_path / "features.h5", tmp_path / "features.h5.lock"
    lock.write_text(json.dumps({"pid": dead_pid(), "command": "killed"}))
    with _files.output_lock(lock, out):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()
    with pytest.raises(KeyError), _files.output_lock(lock, out):
        raise KeyError("a failure inside")
    assert not lock.exists()


def test_prepare_data_refuses_an_output_another_process_is_making(tmp_path, synthetic_root):
    out = tmp_path / "labels.h5"
    (tmp_path / "labels.h5.lock").write_text(json.dumps({"pid": os.getppid(), "command": "drop prepare-data"}))
    with pytest.raises(DropError, match="is being made by another process"):
        api.prepare_data("synthetic", root=synthetic_root, labeler="stripes", workers=0, out=out, progress=False)
    assert not out.exists()


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MB tmpfs where this user may mount one (root in a container), else skipped."""
    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1M", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip("cannot mount a tmpfs here; test_the_final_file_checks_the_free_space_first injects it")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_a_full_disk_while_the_labels_file_is_assembled_is_one_line(small_disk, synthetic_root, monkeypatch):
    """HDF5 reports a full disk from a destructor and then crashes: the final file checks the space first."""
    out = small_disk / "labels.h5"
    with pytest.raises(DropError, match=r"the disk holding .*small is full"):
        api.prepare_data("synthetic", root=synthetic_root, labeler="stripes", workers=0, out=out, progress=False)
    assert not out.exists() and leftovers(small_disk) == []


def test_the_final_file_checks_the_free_space_first(tmp_path, monkeypatch):
    out = tmp_path / "features.h5"
    (tmp_path / "blocks").mkdir()
    (tmp_path / "blocks" / "chunk.npz").write_bytes(b"x" * 5000)
    usage = _files.shutil.disk_usage(tmp_path)
    monkeypatch.setattr(_files.shutil, "disk_usage", lambda path: usage._replace(free=4000))
    with pytest.raises(DropError, match="needs about 0 MB and 0 MB are free") as error:
        _files.ensure_space(out, _files.folder_bytes(tmp_path / "blocks"))
    assert error.value.errno == errno.ENOSPC


def damage_a_chunk(path: Path, dataset: str, chunk: int = 1) -> None:
    """Overwrite the middle of one compressed chunk of ``dataset`` in the HDF5 file ``path``."""
    import h5py

    with h5py.File(path, "r") as f:
        info = f[dataset].id.get_chunk_info(chunk)
    with open(path, "r+b") as f:
        f.seek(info.byte_offset + info.size // 3)
        f.write(b"\xff" * min(64, info.size // 3))


def test_a_damaged_chunk_of_a_labels_file_is_one_line_also_from_a_worker(tmp_path, synthetic_root, synthetic_labels):
    import shutil

    from torch.utils.data import DataLoader

    from drop_cli.data.datasets import load_dataset
    from drop_cli.data.images import ReidImages
    from drop_cli.labels import LabelFile

    damaged = tmp_path / "labels.h5"
    shutil.copy(synthetic_labels, damaged)
    damage_a_chunk(damaged, "labels")
    labels = LabelFile(damaged)  # the index and the small arrays still read
    with pytest.raises(DropError, match=r"labels\.h5 is damaged: cannot read /labels") as caught:
        labels.read_all()
    assert "\n" not in caught.value.message and "--overwrite" in caught.value.hint
    records = load_dataset("synthetic", synthetic_root).train
    images = ReidImages(records, synthetic_root / "synthetic", lambda image, lab: (image, lab), labels)
    with pytest.raises(DropError) as caught:  # a DataLoader worker re-raises it with its traceback
        for _ in DataLoader(images, num_workers=1, batch_size=64):
            pass
    assert caught.value.message.startswith(f"{damaged} is damaged: cannot read /labels"), caught.value.message
    assert "\n" not in caught.value.message and "Traceback" not in caught.value.message


def test_a_damaged_parsing_chunk_of_a_features_file_is_one_line(tmp_path):
    import numpy as np

    from drop_cli.features.file import FeatureFile, FeatureWriter

    path = tmp_path / "features.h5"
    n, rng = 600, np.random.default_rng(0)  # three chunks of 256 rows
    with FeatureWriter(path, ("global", "fg"), {"dataset": "synthetic", "splits": ["query"]}) as writer:
        writer.add_split("query", [f"q/{i}.jpg" for i in range(n)], np.arange(n), np.zeros(n), 8, "float32", (16, 8))
        writer.write(
            "query",
            0,
            rng.normal(size=(n, 2, 8)).astype(np.float32),
            np.ones((n, 2), np.float32),
            rng.integers(0, 9, (n, 16, 8), dtype=np.uint8),
        )
        writer.commit()
    damage_a_chunk(path, "query/parsing")
    file = FeatureFile(path)
    assert file.read("query").embeddings.shape == (n, 2, 8)  # without the parsing maps it reads
    with pytest.raises(DropError, match=r"features\.h5 is damaged: cannot read /query/parsing") as caught:
        file.read("query", parsing=True)
    assert "extract-features" in caught.value.hint


def test_make_synthetic_removes_the_temporary_folder_of_a_killed_run(tmp_path):
    from drop_cli.data.datasets import SYNTHETIC_MIN_IDS

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".synthetic.{int(dead.stdout)}.tmp"
    (stale / "query").mkdir(parents=True)
    (stale / "query" / "half-written.jpg").write_bytes(b"\xff\xd8")
    api.make_synthetic(tmp_path, ids=SYNTHETIC_MIN_IDS, seed=0, workers=0, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synthetic"]

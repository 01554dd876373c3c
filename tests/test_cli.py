"""The command line in-process (typer's CliRunner) and, for kill -9, as a real process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from drop_cli import __version__
from drop_cli.cli import app
from drop_cli.labels import LabelFile

runner = CliRunner()
README = Path(__file__).resolve().parents[1] / "README.md"


def _commands() -> list[str]:
    """Every leaf command, e.g. "prepare-data" and "recipe show"."""
    import typer.main

    def walk(group, prefix):
        for name, command in group.commands.items():
            if hasattr(command, "commands"):  # a group, e.g. `recipe`
                yield from walk(command, f"{prefix}{name} ")
            else:
                yield f"{prefix}{name}"

    return sorted(walk(typer.main.get_command(app), ""))


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"drop {__version__}"


@pytest.mark.parametrize("command", _commands())
def test_every_command_has_help_with_an_example_and_is_in_the_readme(command):
    result = runner.invoke(app, [*command.split(), "--help"])
    assert result.exit_code == 0
    assert "Example: drop " + command in " ".join(result.stdout.split())
    assert f"drop {command}" in README.read_text()


def test_prepare_data_json(synthetic_root, tmp_path):
    out = tmp_path / "labels.h5"
    result = runner.invoke(
        app,
        [
            "prepare-data",
            "synthetic",
            "--root",
            str(synthetic_root),
            "--labeler",
            "synthetic",
            "--preset",
            "five",
            "--out",
            str(out),
            "--workers",
            "0",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert set(payload) >= {"dataset", "splits", "labels", "labeler", "preset", "flagged", "seconds"}
    assert payload["labels"] == str(out) and payload["labeler"] == "synthetic" and payload["flagged"] == 0
    assert set(payload["splits"]) == {"train", "query", "gallery"}
    assert all(0 <= v <= 1 for s in payload["splits"].values() for v in s["part_share"].values())
    with LabelFile(out) as labels, LabelFile(synthetic_root / "synthetic" / "ground_truth.h5") as truth:
        path = labels.paths[0]
        eight = truth[path][::2, ::2]  # 256x128 ground truth, nearest-sampled to 128x64
        five = np.array([0, 1, 2, 2, 3, 4, 4, 5, 5])[eight]
        assert np.array_equal(labels[path], five)


def test_dataset_info_json(synthetic_root):
    result = runner.invoke(app, ["dataset-info", "synthetic", "--root", str(synthetic_root), "--json"])
    assert result.exit_code == 0
    payload = json.loads(result.stdout)
    assert payload["splits"]["query"]["images"] > 0 and payload["warnings"] == []


def test_table_titles_stay_on_one_line(synthetic_root, tmp_path, monkeypatch):
    """A table is widened to its title, which often holds a path (up to the terminal's 80 columns here)."""
    monkeypatch.chdir(tmp_path)
    root = Path("a-folder-name-long-enough-to-be-wider-than-the-table") / "data"
    root.parent.mkdir()
    root.symlink_to(synthetic_root)
    result = runner.invoke(app, ["dataset-info", "synthetic", "--root", str(root)])
    assert result.exit_code == 0, result.output
    assert f"synthetic ({root / 'synthetic'})" in result.stdout


@pytest.mark.parametrize(
    "args,message",
    [
        (["prepare-data", "nope", "--root", "."], "error: unknown dataset 'nope'."),
        (
            ["prepare-data", "synthetic", "--root", ".", "--labeler", "psoe"],
            "error: unknown labeler 'psoe'. Did you mean 'pose'?",
        ),
        (["prepare-data", "synthetic", "--root", ".", "--preset", "six"], "error: unknown preset 'six'."),
        (["dataset-info", "market1501", "--root", "/nonexistent"], "error: market1501: dataset folder"),
    ],
)
def test_bad_input_is_one_line_and_exit_1(args, message):
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert result.stderr.startswith(message) and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_bad_input_with_json_prints_the_error_as_json():
    result = runner.invoke(app, ["prepare-data", "nope", "--json"])
    assert result.exit_code == 1 and json.loads(result.stdout)["error"] == "unknown dataset 'nope'."


def test_make_synthetic_refuses_other_settings(synthetic_root):
    result = runner.invoke(app, ["make-synthetic", str(synthetic_root), "--ids", "13", "--seed", "3"])
    assert result.exit_code == 1 and "already exists with ids=12 seed=3" in result.stderr
    same = runner.invoke(app, ["make-synthetic", str(synthetic_root), "--ids", "12", "--seed", "3", "--json"])
    assert same.exit_code == 0 and json.loads(same.stdout)["already_complete"] is True


@pytest.mark.slow
@pytest.mark.network
def test_kill_9_then_resume_gives_the_uninterrupted_file(synthetic_root, tmp_path):
    """prepare-data killed with SIGKILL mid-run, then run again, ends with the same labels."""
    killed, reference = tmp_path / "killed.h5", tmp_path / "reference.h5"
    cmd = [
        sys.executable,
        "-m",
        "drop_cli",
        "prepare-data",
        "synthetic",
        "--root",
        str(synthetic_root),
        "--labeler",
        "pose",
        "--workers",
        "1",
        "--json",
    ]
    proc = subprocess.Popen(
        [*cmd, "--out", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    first_block = killed.with_name("killed.h5.partial") / "block-000000.npz"
    deadline = time.monotonic() + 120
    while not first_block.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert first_block.exists() and not killed.exists(), "the run must be killed after its first block"
    resumed = subprocess.run([*cmd, "--out", str(killed)], capture_output=True, text=True, check=True)
    assert json.loads(resumed.stdout)["labels"] == str(killed)
    subprocess.run([*cmd, "--out", str(reference), "--workers", "2"], capture_output=True, check=True)
    with LabelFile(killed) as a, LabelFile(reference) as b:
        assert a.paths == b.paths
        assert np.array_equal(a.read_all(), b.read_all())
        assert np.array_equal(a.all_quality, b.all_quality) and np.array_equal(a.all_flags, b.all_flags)
        assert (a.read_all() > 0).mean() > 0.1, "pose labels must find people in the synthetic set"


def _alive(pid: int) -> bool:
    """Running (a zombie, dead but not yet reaped by its new parent, is not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.mark.slow
def test_kill_9_of_the_parent_leaves_no_worker(tmp_path):
    """make-synthetic's worker processes end within seconds when their parent is killed with SIGKILL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "drop_cli", "make-synthetic", str(tmp_path), "--ids", "100", "--workers", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline, workers = time.monotonic() + 120, []
    while len(workers) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        workers = [int(p) for p in children.read_text().split()] if children.exists() else []
    assert len(workers) >= 2, "the workers must have started"
    time.sleep(1.0)  # the pool's initializer (the watch) has run
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while any(map(_alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(map(_alive, workers)), "workers outlived their killed parent"

"""kill -9 at a chosen moment, then the same command again: the result is the uninterrupted one, array
by array. The killed command runs as a real process; a small wrapper (``_CHILD``) counts its steps in a
file, and slows each one a little, so that the test can kill it at the step it drew."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from drop_cli import api
from drop_cli.features import file as features_file
from drop_cli.features.file import read_features
from drop_cli.train import loop as loop_module
from drop_cli.train.checkpoint import load_checkpoint

from .conftest import TINY, tiny_recipe

pytestmark = pytest.mark.slow

_CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import drop_cli.{module} as target
    from drop_cli.cli import main

    counter, real = Path(sys.argv[1]), target.{function}

    def counted(*args, **kwargs):
        out = real(*args, **kwargs)
        counter.write_text(str(int(counter.read_text() or 0) + 1) if counter.exists() else "1")
        time.sleep(0.05)
        return out

    target.{function} = counted
    {setup}
    sys.exit(main(sys.argv[2:]))
    """
)


def run_drop(argv: list[str], setup: str = "") -> str:
    """``drop ARGV`` in a new process after ``setup`` (Python); its stdout."""
    script = f"import sys\n{setup}\nfrom drop_cli.cli import main\nsys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", script, *argv], check=True, capture_output=True, text=True).stdout


def kill_at_step(tmp_path: Path, module: str, function: str, argv: list[str], step: int, setup: str = "") -> None:
    """Run ``drop ARGV`` in a new process whose ``drop_cli.MODULE.FUNCTION`` counts its calls; kill -9
    it once the count reaches ``step``."""
    counter = tmp_path / f"steps-{time.monotonic_ns()}"
    script = _CHILD.format(module=module, function=function, setup=setup)
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(counter), *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        if counter.exists() and int(counter.read_text() or 0) >= step:
            break
        time.sleep(0.01)
    assert proc.poll() is None, f"it ended before step {step}: {proc.stderr.read().decode()[-2000:]}"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_train_killed_at_a_random_step_resumes_to_the_uninterrupted_weights(
    synthetic_labels, synthetic_root, tmp_path, monkeypatch
):
    overrides = tiny_recipe(synthetic_root, **{"train.epochs": 3, "train.eval_every": 1})
    calls = []
    real_step = loop_module.train_step
    monkeypatch.setattr(loop_module, "train_step", lambda *a, **k: calls.append(1) or real_step(*a, **k))
    api.train(TINY, overrides=overrides, output=tmp_path / "full", progress=False)
    monkeypatch.undo()
    steps = len(calls)
    step = random.Random(11).randrange(2, steps - 1)  # any step: mid-epoch, or while a checkpoint is written
    cut = tmp_path / "cut"
    sets = [f"--set={o}" for o in overrides]
    kill_at_step(
        tmp_path, "train.loop", "train_step", ["train", "--recipe", str(TINY), *sets, "--output", str(cut)], step
    )
    assert not (cut / "metrics.csv").exists() or len((cut / "metrics.csv").read_text().splitlines()) < 4
    if not (cut / "last.pt").exists():  # killed in the first epoch: nothing to resume, the run starts over
        cut = tmp_path / "cut-again"
        api.train(TINY, overrides=overrides, output=cut, progress=False)
    else:
        subprocess.run(
            [sys.executable, "-m", "drop_cli", "train", "--resume", str(cut)], check=True, capture_output=True
        )
    a, b = load_checkpoint(tmp_path / "full" / "last.pt"), load_checkpoint(cut / "last.pt")
    assert a["epoch"] == b["epoch"] == 2 and a["model"].keys() == b["model"].keys()  # epochs count from 0
    for key in a["model"]:
        assert torch.allclose(a["model"][key].float(), b["model"][key].float(), atol=1e-6, rtol=0), key
    assert (cut / "metrics.csv").read_text().splitlines()[0] == (
        tmp_path / "full" / "metrics.csv"
    ).read_text().splitlines()[0]
    assert len((cut / "metrics.csv").read_text().splitlines()) == 4
    assert sorted(p.name for p in cut.iterdir()) == sorted(p.name for p in (tmp_path / "full").iterdir())


def test_extract_features_killed_mid_block_resumes_to_the_uninterrupted_file(checkpoint, tmp_path, monkeypatch):
    setup = "import drop_cli.features.file as f; f.CHUNK_IMAGES = 8"  # 2 query + 7 gallery chunks
    reference = tmp_path / "reference.h5"
    argv = ["extract-features", "--checkpoint", str(checkpoint)]
    out = tmp_path / "cut.h5"
    step = random.Random(5).randrange(1, 8)  # chunks saved before the kill, which lands inside the next one
    kill_at_step(tmp_path, "features.file", "PartialFeatures.save", [*argv, "--out", str(out)], step, setup)
    assert not out.exists() and len(list((tmp_path / "cut.h5.partial").glob("*.npz"))) >= step
    resumed = json.loads(run_drop([*argv, "--out", str(out), "--json"], setup))
    assert resumed["resumed_chunks"] >= step
    monkeypatch.setattr(features_file, "CHUNK_IMAGES", 8)
    api.extract_features(checkpoint, out=reference, progress=False)
    a, b = read_features(reference, parsing=True), read_features(out, parsing=True)
    for split in ("query", "gallery"):
        assert a[split].paths == b[split].paths
        for name in ("embeddings", "visibility", "parsing", "pids", "camids"):
            assert np.array_equal(getattr(a[split], name), getattr(b[split], name)), (split, name)
    assert not (tmp_path / "cut.h5.partial").exists()
    assert not [p.name for p in tmp_path.iterdir() if ".tmp" in p.name], "no temporary left"

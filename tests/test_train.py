"""drop train: run folder, checkpoints, exact resume, clear errors, DDP on CPU."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys

import pytest
import torch

from drop_cli import api
from drop_cli.errors import DropError, Interrupted
from drop_cli.recipe import SCHEMA_VERSION, load_recipe
from drop_cli.train import loop as loop_module
from drop_cli.train.checkpoint import load_checkpoint

from .conftest import TINY, tiny_recipe


@pytest.mark.slow
def test_train_writes_a_complete_run_folder(synthetic_labels, synthetic_root, tmp_path):
    result = api.train(TINY, overrides=tiny_recipe(synthetic_root), output=tmp_path / "run", progress=False)
    run = result.run_dir
    for name in ("recipe.yaml", "env.json", "log.txt", "metrics.csv", "curves.png", "last.pt"):
        assert (run / name).is_file(), name
    assert not (run / "best.pt").exists(), "no model is selected on the test split"
    rows = list(csv.DictReader((run / "metrics.csv").read_text().splitlines()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert {
        "loss",
        "id_global",
        "part_triplet",
        "pct_triplet",
        "pct_compact",
        "parsing",
        "lr",
        "rank1",
        "mAP",
        "mINP",
    } <= set(rows[0])
    assert all(0 <= float(r["mAP"]) <= 1 for r in rows)
    assert rows[0]["memory"] == "0", "no memory regime before loss.memory_start_epoch"
    payload = result.to_json()
    assert payload["checkpoint"] == str(run / "last.pt") and "best" not in payload
    assert payload["final"] == {"epoch": 2, **{k: pytest.approx(float(rows[1][k])) for k in ("rank1", "mAP", "mINP")}}
    checkpoint = load_checkpoint(run / "last.pt")
    assert checkpoint["recipe"]["model"]["backbone"] == "test_resnet" and checkpoint["num_classes"] == 6
    assert checkpoint["recipe"]["version"] == SCHEMA_VERSION and checkpoint["epoch"] == 1
    assert json.loads((run / "env.json").read_text())["seed"] == 0
    assert "epoch 2:" in (run / "log.txt").read_text()
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_resume_after_interruption_ends_with_the_same_weights(synthetic_labels, synthetic_root, tmp_path, monkeypatch):
    overrides = tiny_recipe(synthetic_root, **{"train.epochs": 3, "train.eval_every": 3})
    full = api.train(TINY, overrides=overrides, output=tmp_path / "full", progress=False)

    real_save = loop_module.save_checkpoint

    def save_then_interrupt_after_epoch_2(path, **content):
        real_save(path, **content)
        if path.name == "last.pt" and content["epoch"] == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(loop_module, "save_checkpoint", save_then_interrupt_after_epoch_2)
    with pytest.raises(Interrupted) as interrupted:  # Ctrl-C after the checkpoint, before metrics.csv
        api.train(TINY, overrides=overrides, output=tmp_path / "cut", progress=False)
    assert interrupted.value.hint == f"Continue with: drop train --resume {tmp_path / 'cut'}"
    assert len((tmp_path / "cut" / "metrics.csv").read_text().splitlines()) == 2  # header + epoch 1
    monkeypatch.setattr(loop_module, "save_checkpoint", real_save)
    resumed = api.train(TINY, overrides=overrides, resume=tmp_path / "cut", progress=False)
    assert resumed.final == full.final
    rows = list(csv.DictReader((tmp_path / "cut" / "metrics.csv").read_text().splitlines()))
    assert [r["memory"] for r in rows] == ["0", "0", "1"], "memory regime once the bank is filled"
    env = json.loads((tmp_path / "cut" / "env.json").read_text())
    assert len(env["resumes"]) == 1 and env["resumes"][0]["seed"] == env["seed"] == 0  # the first start kept
    a = load_checkpoint(tmp_path / "full" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "cut" / "last.pt")["model"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-6, rtol=0), key


@pytest.mark.slow
def test_the_number_of_workers_does_not_change_the_weights(synthetic_labels, synthetic_root, tmp_path):
    """Every draw carries its own augmentation seed: 0 or 2 DataLoader workers train the same model."""
    runs = [
        api.train(
            TINY,
            overrides=tiny_recipe(
                synthetic_root,
                **{"train.epochs": 2, "train.eval_every": 2, "data.workers": workers, "data.color_jitter": 0.2},
            ),
            output=tmp_path / f"workers{workers}",
            progress=False,
        )
        for workers in (0, 2)
    ]
    assert runs[0].final == runs[1].final
    a, b = (load_checkpoint(run.run_dir / "last.pt")["model"] for run in runs)
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.slow
def test_resume_refuses_another_recipe(synthetic_labels, synthetic_root, tmp_path):
    overrides = tiny_recipe(synthetic_root, **{"train.epochs": 1})
    api.train(TINY, overrides=overrides, output=tmp_path / "run", progress=False)
    with pytest.raises(DropError, match=r"recipe differs in model\.embed_dim, optim\.lr"):
        api.train(
            TINY, overrides=[*overrides, "model.embed_dim=16", "optim.lr=0.1"], resume=tmp_path / "run", progress=False
        )
    with pytest.raises(DropError, match="already holds a run.*--resume"):
        api.train(TINY, overrides=overrides, output=tmp_path / "run", progress=False)


def test_missing_labels_name_the_prepare_data_command(synthetic_root, tmp_path):
    with pytest.raises(
        DropError,
        match=r"labels file .*labels-pose-five\.h5 not found.*drop prepare-data synthetic "
        r"--root .* --labeler pose --preset five",
    ):
        api.train(
            TINY,
            overrides=tiny_recipe(synthetic_root, **{"data.labeler": "pose", "data.preset": "five"}),
            output=tmp_path / "run",
            progress=False,
        )


def test_labels_preset_must_match_the_recipe(synthetic_labels, synthetic_root, tmp_path):
    with pytest.raises(DropError, match=r"holds `eight` labels \(8 parts\) but the recipe asks for data.preset five"):
        api.train(
            TINY,
            overrides=tiny_recipe(synthetic_root, **{"data.preset": "five", "data.labels": str(synthetic_labels)}),
            output=tmp_path / "run",
            progress=False,
        )


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_asked_for_but_missing(synthetic_labels, synthetic_root, tmp_path):
    with pytest.raises(DropError, match="--device cuda was asked for, but PyTorch sees no CUDA device"):
        api.train(TINY, overrides=tiny_recipe(synthetic_root), device="cuda", output=tmp_path / "run", progress=False)


def test_non_finite_loss_stops_naming_step_and_term(synthetic_labels, synthetic_root, tmp_path, monkeypatch):
    from drop_cli.train import objective

    monkeypatch.setattr(objective, "parsing_loss", lambda logits, *a, **k: logits.sum() * float("nan"))
    with pytest.raises(DropError, match=r"the loss became nan at epoch 1, step 1 \(term parsing\)"):
        api.train(TINY, overrides=tiny_recipe(synthetic_root), output=tmp_path / "run", progress=False)


@pytest.mark.slow
def test_ddp_on_cpu_with_two_processes(synthetic_labels, synthetic_root, tmp_path):
    """torchrun + DDP with the gloo backend: both ranks train, rank 0 alone writes the run folder."""
    run, recipe = tmp_path / "ddp", tmp_path / "tiny.yaml"
    recipe.write_text(load_recipe(TINY, tiny_recipe(synthetic_root, **{"train.epochs": 1})).to_yaml())
    args = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "drop_cli",
        "train",
        "--recipe",
        str(recipe),
        "--device",
        "cpu",
        "--output",
        str(run),
        "--json",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1])["run_dir"] == str(run)
    assert json.loads((run / "env.json").read_text())["world_size"] == 2
    rows = list(csv.DictReader((run / "metrics.csv").read_text().splitlines()))
    assert len(rows) == 1 and float(rows[0]["mAP"]) > 0


@pytest.mark.slow
def test_global_feature_baseline_and_eval_distance(synthetic_labels, synthetic_root, tmp_path):
    """loss.parts=false trains the global embedding alone; training's evaluation uses eval.distance,
    with the same numbers `drop evaluate` gives on the cached features."""
    result = api.train(
        TINY,
        overrides=tiny_recipe(synthetic_root, **{"loss.parts": False, "eval.distance": "global", "train.epochs": 1}),
        output=tmp_path / "run",
        progress=False,
    )
    row = next(csv.DictReader((result.run_dir / "metrics.csv").read_text().splitlines()))
    assert {k for k in row if k.startswith(("id_", "pct", "part", "parsing", "global"))} == {
        "id_global",
        "global_triplet",
    }
    features = api.extract_features(result.run_dir / "last.pt", progress=False).features
    scored = api.evaluate(features, distance="global", progress=False).results[0]
    assert scored["mAP"] == pytest.approx(result.final["mAP"]) and scored["rank1"] == pytest.approx(
        result.final["rank1"]
    )
    parts = api.evaluate(features, distance="parts+foreground", progress=False).results[0]
    assert parts["mAP"] != pytest.approx(scored["mAP"])


def test_loss_tally_reads_in_batches_and_names_the_first_bad_step():
    from drop_cli.train.loop import LossTally

    tally = LossTally(epoch=2, read_every=3)
    for step in range(5):
        terms = {"a": torch.tensor(float(step)), "b": torch.tensor(1.0)}
        tally.add(terms, sum(terms.values()))
    assert tally.steps == 3 and len(tally.pending) == 2  # read once, after step 3
    assert tally.means() == {"a": 2.0, "b": 1.0, "loss": 3.0}
    tally = LossTally(epoch=2, read_every=3)
    for value in (1.0, float("inf"), float("nan")):
        terms = {"a": torch.tensor(1.0), "b": torch.tensor(value)}
        if math.isnan(value):  # the third step triggers the read
            with pytest.raises(DropError, match=r"the loss became inf at epoch 3, step 2 \(term b\)"):
                tally.add(terms, sum(terms.values()))
        else:
            tally.add(terms, sum(terms.values()))


def test_a_drop_0_1_checkpoint_loads_and_gives_its_outputs():
    """Written by drop 0.1 (before the recipe schema had a version): the model rebuilt from its migrated
    recipe has every tensor in place and computes what 0.1 computed."""
    import numpy as np

    from drop_cli.train.checkpoint import model_from_checkpoint

    from .conftest import DATA

    model = model_from_checkpoint(load_checkpoint(DATA / "checkpoint-0.1.pt"))
    expected = np.load(DATA / "checkpoint-0.1-outputs.npz")
    with torch.no_grad():
        out = model(torch.from_numpy(expected["images"]))
    for name in ("embeddings", "bn_embeddings", "parsing_logits"):
        np.testing.assert_allclose(getattr(out, name).numpy(), expected[name], atol=1e-5, err_msg=name)


@pytest.mark.slow
def test_flagged_training_images_are_left_out(synthetic_labels, synthetic_root, tmp_path):
    """An image prepare-data flagged (here: no person found) is not trained on unless asked for."""
    import shutil

    import h5py

    from drop_cli.data import load_dataset

    labels = tmp_path / "flagged.h5"
    shutil.copy(synthetic_labels, labels)
    train = [r.path for r in load_dataset("synthetic", synthetic_root).train]
    with h5py.File(labels, "r+") as f:
        paths = f["paths"].asstr()[()].tolist()
        flags = f["flags"][()]
        for path in train[:3]:
            flags[paths.index(path)] = 2  # no_person
        f["flags"][...] = flags
    overrides = tiny_recipe(synthetic_root, **{"data.labels": str(labels), "train.epochs": 1})
    run = api.train(TINY, overrides=overrides, output=tmp_path / "skip", progress=False).run_dir
    assert (run / "flagged.txt").read_text().split() == sorted(train[:3])
    assert f"({len(train) - 3:,} train images" in (run / "log.txt").read_text()
    kept = api.train(
        TINY, overrides=[*overrides, "data.skip_flagged=false"], output=tmp_path / "keep", progress=False
    ).run_dir
    assert not (kept / "flagged.txt").exists() and f"({len(train):,} train images" in (kept / "log.txt").read_text()

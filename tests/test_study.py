"""The ablation study driver at a tiny size: every run recorded, summary and files written, resumable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from drop_cli.errors import DropError
from drop_cli.projects.ablation_study import run_study

TINY = [
    "train.epochs=1",
    "train.eval_every=1",
    "train.batch_size=8",
    "data.height=64",
    "data.width=32",
    "data.workers=0",
    "eval.batch_size=32",
    "model.embed_dim=32",
]


@pytest.mark.network  # pose labels
def test_tiny_study(tmp_path, monkeypatch):
    configs = ("global baseline", "DROP")
    result = run_study(tmp_path, seeds=(0, 1), ids=12, configs=configs, overrides=TINY, progress=False)
    assert [(r["config"], r["seed"]) for r in result.runs] == [(c, s) for c in configs for s in (0, 1)]
    assert all(0 <= r["mAP"] <= 1 for r in result.runs)
    drop_runs = [r for r in result.runs if r["config"] == "DROP"]
    assert all(0 <= r["parts_miou"] <= 1 for r in drop_runs)
    assert all(r["parts_miou"] is None for r in result.runs if r["config"] == "global baseline")
    summary = {row["config"]: row for row in result.summary}
    assert summary["DROP"]["runs"] == 2
    assert summary["DROP"]["mAP_mean"] == pytest.approx(sum(r["mAP"] for r in drop_runs) / 2)
    assert summary["global baseline"]["parts_miou_mean"] is None
    assert result.labels["labeler"] == "pose"
    assert result.labels["unoccluded"]["images"] > 0 and result.labels["occluded"]["images"] > 0
    assert json.loads(result.json_path.read_text())["summary"] == result.summary
    assert result.csv_path.read_text().startswith("config,runs,mAP_mean")
    assert result.title == "synthetic 64x32, pose labels"
    assert all(row["paper_mAP"] is None for row in result.summary), "the paper reports nothing on the synthetic set"

    from drop_cli.train import loop

    def no_training(*args, **kwargs):
        raise AssertionError("a training step ran")

    monkeypatch.setattr(loop, "train_step", no_training)
    again = run_study(tmp_path, seeds=(0,), ids=12, configs=("DROP",), overrides=TINY, progress=False)
    assert again.runs[0]["mAP"] == drop_runs[0]["mAP"], "a finished run is reused, not retrained"


@pytest.mark.slow
def test_study_on_a_recipe_shows_the_paper_numbers(tmp_path, synthetic_root, synthetic_labels, monkeypatch):
    """--recipe: the user's dataset; DROP's published numbers beside ours where the paper has them."""
    from drop_cli.projects import ablation_study

    monkeypatch.setitem(ablation_study.PAPER, ("synthetic", 64), {"DROP": (76.8, 63.3)})
    result = run_study(
        tmp_path,
        recipe=Path(__file__).parent / "data" / "tiny.yaml",
        seeds=(0,),
        configs=("BPBreID-equivalent", "DROP"),
        overrides=[f"data.root={synthetic_root}", "train.epochs=1"],
        progress=False,
    )
    rows = {row["config"]: row for row in result.summary}
    assert (rows["DROP"]["paper_rank1"], rows["DROP"]["paper_mAP"]) == (76.8, 63.3)
    assert rows["BPBreID-equivalent"]["paper_mAP"] is None and rows["DROP"]["parts_miou_mean"] is None
    assert result.labels == {"labeler": "synthetic"} and not (tmp_path / "data").exists()


def test_study_without_the_pose_model_is_an_error_unless_the_ground_truth_is_asked_for(tmp_path, monkeypatch):
    from drop_cli.api import data
    from drop_cli.errors import ModelFileError

    def unavailable(path=None):
        raise ModelFileError("the pose model cannot be downloaded here.")

    monkeypatch.setattr(data, "pose_model_path", unavailable)
    with pytest.raises(ModelFileError, match="cannot be downloaded"):
        run_study(tmp_path, seeds=(0,), ids=12, configs=("DROP",), overrides=TINY, progress=False)


def test_unknown_configuration(tmp_path):
    with pytest.raises(DropError, match="unknown study configuration 'DROP - dpu'. Did you mean 'DROP - DPU'"):
        run_study(tmp_path, configs=("DROP - dpu",), progress=False)

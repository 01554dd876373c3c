"""The ablation study driver at a tiny size: every run recorded, summary and files written, resumable."""
from __future__ import annotations

import json

import pytest

from drop_cli import api
from drop_cli.errors import DropError

TINY = ["train.epochs=1", "train.eval_every=1", "train.batch_size=8", "data.height=64", "data.width=32",
        "data.workers=0", "eval.batch_size=32", "model.embed_dim=32"]


def test_tiny_study(tmp_path):
    configs = ("global baseline", "DROP")
    result = api.ablation_study(tmp_path, seeds=(0, 1), ids=12, configs=configs, overrides=TINY, progress=False)
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
    again = api.ablation_study(tmp_path, seeds=(0,), ids=12, configs=("DROP",), overrides=TINY, progress=False)
    assert again.runs[0]["mAP"] == drop_runs[0]["mAP"], "a finished run is reused, not retrained"


def test_unknown_configuration(tmp_path):
    with pytest.raises(DropError, match="unknown study configuration 'DROP - dpu'. Did you mean 'DROP - DPU'"):
        api.ablation_study(tmp_path, configs=("DROP - dpu",), progress=False)

"""drop quickstart end to end: every stage, every output file; and the visualize commands on its outputs."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from drop_cli import api
from drop_cli.cli import app

runner = CliRunner()
TINY = [
    "train.epochs=1",
    "train.batch_size=8",
    "data.height=64",
    "data.width=32",
    "data.workers=0",
    "eval.batch_size=32",
    "model.embed_dim=32",
]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny_quickstart(tmp_path_factory):
    out = tmp_path_factory.mktemp("quickstart")
    return out, api.quickstart(out, ids=12, overrides=TINY, progress=False)


def test_quickstart_makes_every_stage(tiny_quickstart):
    out, result = tiny_quickstart
    data = out / "data" / "synthetic"
    assert (data / "ground_truth.h5").is_file()
    assert result.labeler == "pose" and (data / "labels-pose-eight.h5").is_file()
    run = result.run_dir
    assert run == out / "runs" / "synthetic-drop"
    for name in (
        "recipe.yaml",
        "env.json",
        "log.txt",
        "metrics.csv",
        "curves.png",
        "last.pt",
        "features.h5",
        "eval/eval.json",
        "eval/eval.csv",
        "eval-rerank/eval.json",
        "eval-rerank/eval.csv",
    ):
        assert (run / name).is_file(), name
    assert [r["rerank"] for r in result.evaluate] == [False, True]
    assert all(0 <= r[k] <= 1 for r in result.evaluate for k in ("rank1", "rank5", "rank10", "mAP", "mINP"))
    assert len(result.images) == 4
    for image in result.images:
        assert image.read_bytes()[:8] == PNG
    payload = result.to_json()
    assert set(payload) == {"run_dir", "labeler", "evaluate", "images", "seconds"}


def test_visualize_commands_on_quickstart_outputs(tiny_quickstart, tmp_path):
    out, result = tiny_quickstart
    features = str(result.run_dir / "features.h5")
    labels = str(out / "data" / "synthetic" / "labels-pose-eight.h5")
    commands = {
        "labels": ["visualize", "labels", "--labels", labels, "--count", "4"],
        "parsing": ["visualize", "parsing", "--features", features, "--labels", labels, "--count", "2"],
        "parsing-checkpoint": ["visualize", "parsing", "--checkpoint", str(result.run_dir / "last.pt"), "--count", "2"],
        "ranking": ["visualize", "ranking", "--features", features, "--worst", "3", "--rerank"],
        "training": ["visualize", "training", str(result.run_dir)],
        "embeddings": ["visualize", "embeddings", "--features", features, "--method", "pca", "--num-ids", "3"],
    }
    for name, args in commands.items():
        target = tmp_path / f"{name}.png"
        outcome = runner.invoke(app, [*args, "--out", str(target), "--json"])
        assert outcome.exit_code == 0, (name, outcome.output)
        assert json.loads(outcome.stdout)["images"] == [str(target)]
        assert target.read_bytes()[:8] == PNG


@pytest.mark.parametrize(
    "args,message",
    [
        (["visualize", "ranking", "--features", "missing.h5"], "features file missing.h5 not found."),
        (["visualize", "training", "."], "metrics.csv not found."),
        (["visualize", "parsing"], "give either --features or --checkpoint."),
        (["visualize", "ranking", "--features", "FEATURES", "--ids", "9999"], "unknown query id 9999."),
        (["visualize", "ranking", "--features", "FEATURES", "--queries", "x"], "'x' is not a comma-separated list"),
    ],
)
def test_visualize_bad_input(tiny_quickstart, args, message):
    features = str(tiny_quickstart[1].run_dir / "features.h5")
    outcome = runner.invoke(app, [a.replace("FEATURES", features) for a in args])
    assert outcome.exit_code == 1 and outcome.stderr.startswith("error: ") and message in outcome.stderr
    assert "Traceback" not in outcome.output


def test_full_quickstart(full_quickstart):
    """The README's first command (its wall time is measured by hand and stated in the README)."""
    _, payload = full_quickstart
    plain = next(r for r in payload["evaluate"] if not r["rerank"])
    assert plain["mAP"] > 0.15, "the CPU recipe learns: chance is about 0.03 on the occluded queries"
    assert len(payload["images"]) == 4


def test_visualize_parsing_needs_parsing_maps(tiny_quickstart, tmp_path):
    run_dir = tiny_quickstart[1].run_dir
    bare = api.extract_features(run_dir / "last.pt", parsing=False, out=tmp_path / "bare.h5", progress=False).features
    outcome = runner.invoke(app, ["visualize", "parsing", "--features", str(bare)])
    assert outcome.exit_code == 1 and outcome.stderr.startswith(f"error: {bare} holds no parsing maps.")

from __future__ import annotations

import gzip
from pathlib import Path

import cv2
import numpy as np
import pytest

DATA = Path(__file__).parent / "data"
# The real Occluded-Duke split's image names (gzip, one per line; tests/data/occluded_duke/README.md).
OCCLUDED_DUKE_LISTS = DATA / "occluded_duke"


def occluded_duke_names(split: str) -> list[str]:
    """The image names of one split (train, query, gallery) of the real Occluded-Duke."""
    return gzip.decompress((OCCLUDED_DUKE_LISTS / f"{split}.list.gz").read_bytes()).decode().split()


def touch_tree(root: Path, relpaths: list[str], content: bytes = b"") -> None:
    """Create empty (or fixed-content) files at ``relpaths`` below ``root``."""
    made: set[Path] = set()
    for rel in relpaths:
        path = root / rel
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        path.write_bytes(content)


def jpeg_bytes(seed: int = 0, height: int = 64, width: int = 32) -> bytes:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", image)[1].tobytes()


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """A small synthetic dataset made once per test session (read-only for tests)."""
    from drop_cli.api import make_synthetic

    root = tmp_path_factory.mktemp("synthetic-root")
    make_synthetic(root, ids=12, seed=3, workers=0, progress=False)
    return root


@pytest.fixture(scope="session")
def synthetic_labels(synthetic_root) -> Path:
    """Ground-truth labels of the small synthetic set, at the default path the recipes expect."""
    from drop_cli.api import prepare_data

    return prepare_data("synthetic", root=synthetic_root, labeler="synthetic", workers=0, progress=False).labels.path


# The recipe of a seconds-long CPU training run on the small synthetic set (with tiny_recipe's overrides).
TINY = DATA / "tiny.yaml"


def tiny_recipe(root: Path, **overrides) -> list[str]:
    """--set overrides of the TINY recipe: the dataset root, and ``overrides`` (``{"train.epochs": 3}``)."""
    return [f"{k}={v}" for k, v in {"data.root": str(root), **overrides}.items()]


@pytest.fixture(scope="session")
def checkpoint(synthetic_labels, synthetic_root, tmp_path_factory) -> Path:
    """last.pt of a tiny model trained once per test session (read-only for tests)."""
    from drop_cli.api import train

    run = tmp_path_factory.mktemp("tiny-run") / "run"
    return train(TINY, overrides=tiny_recipe(synthetic_root), output=run, progress=False).run_dir / "last.pt"


@pytest.fixture(scope="session")
def untrained(tmp_path_factory) -> Path:
    """A drop checkpoint of the TINY recipe's network, initial weights, BatchNorm statistics moved off
    their defaults so that eval mode is not an identity."""
    import dataclasses

    import torch

    from drop_cli.model import build_model
    from drop_cli.parts import part_names
    from drop_cli.recipe import load_recipe
    from drop_cli.train.checkpoint import save_checkpoint

    recipe = load_recipe(TINY)
    torch.manual_seed(0)
    model = build_model(
        6,
        len(part_names(recipe.data.preset)),
        ppe_height=recipe.data.height // 4,
        **{**dataclasses.asdict(recipe.model), "pretrained": False, "weights": None},
    )
    with torch.no_grad():
        model.train()(torch.randn(8, 3, recipe.data.height, recipe.data.width))
    path = tmp_path_factory.mktemp("untrained") / "last.pt"
    save_checkpoint(path, recipe=recipe.to_dict(), model=model.state_dict(), num_classes=6, epoch=0, history=[])
    return path


@pytest.fixture(scope="session")
def full_quickstart(tmp_path_factory) -> tuple[Path, dict]:
    """The README's first command, run once per test session (minutes): its folder and its --json payload."""
    import json

    from typer.testing import CliRunner

    from drop_cli.cli import app

    out = tmp_path_factory.mktemp("full-quickstart")
    outcome = CliRunner().invoke(app, ["quickstart", "--out", str(out), "--json"])
    assert outcome.exit_code == 0, outcome.output
    return out, json.loads(outcome.stdout)


# Fixtures that need the pose labeler's model file (from the package registry): their tests are `network`.
NETWORK_FIXTURES = {"model_file", "eight", "tiny_quickstart", "pose_labels", "full_quickstart"}
# Fixtures that train a model (tens of seconds on 2 cores): their tests are `slow`.
SLOW_FIXTURES = {"checkpoint", "features", "full_quickstart"}


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if NETWORK_FIXTURES & fixtures:
            item.add_marker(pytest.mark.network)
        if SLOW_FIXTURES & fixtures:
            item.add_marker(pytest.mark.slow)

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
OCCLUDED_DUKE_LISTS = SHARED / "datasets" / "occluded_duke"


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

    return prepare_data("synthetic", synthetic_root, labeler="synthetic", workers=0, progress=False).labels.path


def tiny_recipe(root: Path, **overrides) -> list[str]:
    """--set overrides for a seconds-long CPU training run on the small synthetic set."""
    values = {
        "data.dataset": "synthetic", "data.root": str(root), "data.labeler": "synthetic", "data.height": 64,
        "data.width": 32, "data.pad": 2, "data.workers": 0, "model.backbone": "test_resnet",
        "model.pretrained": False, "model.embed_dim": 32, "train.epochs": 2, "train.batch_size": 8,
        "train.eval_every": 1, "optim.warmup_epochs": 1, "optim.milestones": [3], "loss.memory_start_epoch": 1,
        "eval.batch_size": 32, **overrides,
    }
    return [f"{k}={v}" for k, v in values.items()]

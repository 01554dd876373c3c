"""`drop quickstart`: the whole loop on the synthetic set."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from .. import _ui
from .._files import prepare_folder
from ..errors import ModelFileError
from ..labels.labelers.pose_model import pose_model_path
from .data import make_synthetic, prepare_data
from .evaluation import evaluate
from .features import extract_features
from .training import resolve_recipe, train
from .visualize import visualize_labels, visualize_parsing, visualize_ranking, visualize_training


@dataclass
class QuickstartResult:
    run_dir: Path
    labeler: str
    evaluate: list[dict]
    images: list[Path]
    seconds: float

    def to_json(self) -> dict:
        return {
            "run_dir": str(self.run_dir),
            "labeler": self.labeler,
            "evaluate": self.evaluate,
            "images": [str(p) for p in self.images],
            "seconds": round(self.seconds, 3),
        }


def synthetic_labeler() -> str:
    """The labeler for the synthetic set: `pose` when its model file can be had, else the synthetic
    ground truth (with a warning saying why)."""
    try:
        pose_model_path()
    except ModelFileError as e:
        _ui.warn(f"the pose labeler's model file cannot be had ({e.message}); using the synthetic ground truth.")
        return "synthetic"
    return "pose"


def quickstart(
    out: str | Path = "quickstart", *, ids: int = 100, overrides: list[str] = (), progress: bool = True
) -> QuickstartResult:
    """The whole loop on the synthetic set, on a CPU: data, labels, training, features, evaluation, pictures.

    Args:
        out: the folder for everything (``data/``, ``runs/``).
        ids: identities of the synthetic set.
        overrides: ``key=value`` changes to the `synthetic` recipe (e.g. ``train.epochs=2``).
    """
    start = time.perf_counter()
    resolve_recipe("synthetic", overrides=overrides)  # a typo or a bad value fails before any work
    out = Path(out).expanduser()
    prepare_folder(out)  # an impossible folder fails before any work too
    data = out / "data"
    _ui.info(f"[bold]1/6[/] synthetic set in {data}")
    make_synthetic(data, ids=ids, seed=0, progress=progress)
    labeler = synthetic_labeler()
    _ui.info(f"[bold]2/6[/] {labeler} labels")
    labels = prepare_data("synthetic", root=data, labeler=labeler, progress=progress).labels.path
    _ui.info("[bold]3/6[/] training (recipe `synthetic`)")
    run_dir = out / "runs" / "synthetic-drop"
    run = train(
        "synthetic",
        overrides=[f"data.root={data}", f"data.labeler={labeler}", *overrides],
        output=None if (run_dir / "last.pt").exists() else run_dir,
        resume=run_dir if (run_dir / "last.pt").exists() else None,
        progress=progress,
    )
    _ui.info("[bold]4/6[/] features")
    features = extract_features(run.checkpoint, progress=progress).features
    _ui.info("[bold]5/6[/] evaluation, without and with re-ranking")
    results = [
        row
        for rerank in (False, True)
        for row in evaluate(
            features, rerank=rerank, out=run.run_dir / ("eval-rerank" if rerank else "eval"), progress=progress
        ).results
    ]
    _ui.info("[bold]6/6[/] pictures")
    images = [
        *visualize_labels(labels, split="query").images,
        *visualize_parsing(features, labels=labels).images,
        *visualize_ranking(features, worst=8).images,
        *visualize_training(run.run_dir).images,
    ]
    return QuickstartResult(run.run_dir, labeler, results, images, time.perf_counter() - start)

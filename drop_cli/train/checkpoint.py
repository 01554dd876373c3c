"""Self-describing checkpoints: plain data (tensors, numbers, strings), never pickled modules.

Saved atomically (temporary name, then rename). Loaded with ``torch.load(weights_only=True)``: a
checkpoint is data, never code. The model is rebuilt from the stored recipe.
"""

from __future__ import annotations

import dataclasses
import os
from datetime import datetime, timezone
from pathlib import Path

import torch

from .._version import __version__
from ..errors import DropError
from ..model import build_model
from ..parts import part_names
from ..recipe import recipe_from_dict
from .run_dir import git_commit

FORMAT = "drop-checkpoint-1"


def save_checkpoint(path: Path, **content) -> None:
    """Write ``content`` (state dicts, epoch, recipe, metrics, ...) plus format, version and date."""
    payload = {
        "format": FORMAT,
        "drop_version": __version__,
        "git_commit": git_commit(),
        "saved": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        **content,
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path).expanduser()
    if not path.is_file():
        raise DropError(f"checkpoint {path} not found.", hint="Pass a run folder's last.pt.")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise DropError(
            f"{path} is not a readable drop checkpoint ({type(e).__name__}).",
            hint="Checkpoints are loaded as data only; re-save foreign ones as a state dict.",
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise DropError(
            f"{path} is not a drop checkpoint (format {data.get('format') if isinstance(data, dict) else None!r}).",
            hint="For backbone weights use the recipe key model.weights.",
        )
    return data


def model_from_checkpoint(checkpoint: dict) -> torch.nn.Module:
    """Rebuild the model a checkpoint was trained with (from its stored recipe) and load its weights."""
    recipe = recipe_from_dict(checkpoint["recipe"])
    model_cfg = {**dataclasses.asdict(recipe.model), "pretrained": False, "weights": None}  # weights come next
    model = build_model(
        checkpoint["num_classes"], len(part_names(recipe.data.preset)), ppe_height=recipe.data.height // 4, **model_cfg
    )
    model.load_state_dict(checkpoint["model"])
    return model.eval()

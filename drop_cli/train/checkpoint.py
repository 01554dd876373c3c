"""Self-describing checkpoints: plain data (tensors, numbers, strings), never pickled modules.

Saved atomically (``drop_cli._files``: temporary name, flush, rename). Loaded with ``torch.load(weights_only=True)``: a
checkpoint is data, never code. The model is rebuilt from the stored recipe.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from pathlib import Path

import torch

from .._files import atomic_path
from .._version import __version__
from ..errors import DropError, RecipeError
from ..model import build_model
from ..parts import part_names
from ..recipe import recipe_from_dict
from .run_dir import git_commit

FORMAT = "drop-checkpoint-1"
# What every checkpoint holds besides the format tag (a file with the tag but not these is damaged).
REQUIRED = {"recipe": dict, "model": dict, "num_classes": int, "epoch": int, "history": list}


def save_checkpoint(path: Path, **content) -> None:
    """Write ``content`` (state dicts, epoch, recipe, metrics, ...) plus format, version and date."""
    payload = {
        "format": FORMAT,
        "drop_version": __version__,
        "git_commit": git_commit(),
        "saved": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        **content,
    }
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: a full disk raises OSError
        torch.save(payload, f)


def load_checkpoint(path: str | Path) -> dict:
    """A checkpoint's content, checked before any of it is used: the format tag, the fields every
    checkpoint has, a stored recipe this drop reads, and weights that are tensors."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DropError(
            f"{path} is a folder, not a checkpoint." if path.is_dir() else f"checkpoint {path} not found.",
            hint=f"Pass a run folder's last.pt (e.g. {path / 'last.pt'})."
            if path.is_dir()
            else "Pass a run folder's last.pt.",
        )
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
    damaged = [key for key, kind in REQUIRED.items() if not isinstance(data.get(key), kind)]
    if not damaged and not all(isinstance(v, torch.Tensor) for v in data["model"].values()):
        damaged = ["model"]
    if damaged:
        raise DropError(
            f"{path} is a damaged drop checkpoint: {', '.join(damaged)} missing or not what drop writes.",
            hint="Use another checkpoint of the run, or train again.",
        )
    try:
        recipe_from_dict(data["recipe"])
    except RecipeError as e:
        raise DropError(f"{path} holds a recipe this drop cannot use: {e.message}", hint=e.hint) from None
    return data


def load_weights(module: torch.nn.Module, state: dict, source: str | Path) -> None:
    """Load a state dict after checking its keys and shapes against ``module``: a mismatch is one line
    that counts the missing, unexpected and reshaped entries and names the first few."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    reshaped = [
        f"{k} {tuple(state[k].shape)} instead of {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    problems = [
        f"{len(names)} {what} ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})"
        for what, names in (("missing", missing), ("unexpected", unexpected), ("with another shape", reshaped))
        if names
    ]
    if problems:
        raise DropError(
            f"{source} does not fit the {type(module).__name__} its recipe builds: {'; '.join(problems)}.",
            hint="The file was changed after training or made by another program; use the run's own last.pt.",
        )
    module.load_state_dict(state)


def model_from_checkpoint(checkpoint: dict, *, source: str | Path = "the checkpoint") -> torch.nn.Module:
    """Rebuild the model a checkpoint was trained with (from its stored recipe) and load its weights
    (``source``, the file, names it in the error when they do not fit)."""
    recipe = recipe_from_dict(checkpoint["recipe"])
    model_cfg = {**dataclasses.asdict(recipe.model), "pretrained": False, "weights": None}  # weights come next
    model = build_model(
        checkpoint["num_classes"], len(part_names(recipe.data.preset)), ppe_height=recipe.data.height // 4, **model_cfg
    )
    load_weights(model, checkpoint["model"], source)
    return model.eval()

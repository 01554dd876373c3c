"""`drop train`."""
from __future__ import annotations

from pathlib import Path


def resolve_recipe(recipe: str | Path | None = None, overrides: list[str] = (),
                   resume: str | Path | None = None):
    """The recipe a run uses: the file (or, resuming without one, the run's own recipe.yaml) plus overrides."""
    from ..recipe import load_recipe

    if recipe is None and resume is not None:
        recipe = Path(resume).expanduser() / "recipe.yaml"
    return load_recipe(recipe, list(overrides))


def train(recipe: str | Path | None = None, overrides: list[str] = (), output: str | Path | None = None,
          resume: str | Path | None = None, device: str = "auto", progress: bool = True):
    """Train DROP from a recipe; evaluates every ``train.eval_every`` epochs and checkpoints into a run folder.

    Args:
        recipe: a YAML recipe (see ``recipes/``); optional with ``resume``.
        overrides: ``key=value`` strings, e.g. ``["optim.lr=1e-4", "model.dpu=false"]``.
        output: the run folder (default ``<train.output>/<train.name>``, numbered if it exists).
        resume: a run folder whose ``last.pt`` to continue from (the recipe must be the same).
        device: ``auto``, ``cpu`` or ``cuda``.

    Returns:
        a ``TrainResult`` with the run folder, the best and final evaluation.
    """
    from ..train.session import run_training

    return run_training(resolve_recipe(recipe, overrides, resume), output, resume, device, progress)

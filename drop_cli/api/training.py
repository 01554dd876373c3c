"""`drop train`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..errors import DropError
from ..recipe import Recipe, load_recipe
from ..train.session import TrainResult, run_training

RecipeArg = str | Path | Sequence[str | Path] | None


def resolve_recipe(
    recipe: RecipeArg = None, *, overrides: Sequence[str] = (), resume: str | Path | None = None
) -> Recipe:
    """The recipe a run uses: the files stacked in order (or, resuming without one, the run's own
    recipe.yaml) plus ``key=value`` overrides."""
    if not recipe and resume is not None:
        run = Path(resume).expanduser()
        if not (run / "last.pt").is_file():
            raise DropError(
                f"{run} is not a run folder to resume (no last.pt in it)."
                if run.is_dir()
                else f"run folder {run} not found.",
                hint="Pass the folder `drop train` made (runs/<name>), which holds last.pt.",
            )
        recipe = run / "recipe.yaml"
    return load_recipe(recipe, list(overrides))


def train(
    recipe: RecipeArg = None,
    *,
    overrides: Sequence[str] = (),
    output: str | Path | None = None,
    resume: str | Path | None = None,
    device: str = "auto",
    progress: bool = True,
) -> TrainResult:
    """Train DROP from a recipe; evaluates every ``train.eval_every`` epochs and checkpoints into a run folder.

    Args:
        recipe: a YAML recipe or a shipped recipe's name (see ``recipes/``), or several stacked in order
            (``["occluded_duke", "ablations/no_dpu"]``); optional with ``resume``.
        overrides: ``key=value`` strings, e.g. ``["optim.lr=1e-4", "model.dpu=false"]``.
        output: the run folder (default ``<train.output>/<train.name>``, numbered if it exists).
        resume: a run folder whose ``last.pt`` to continue from (the recipe must be the same).
        device: ``auto``, ``cpu`` or ``cuda``.

    Returns:
        a ``TrainResult`` with the run folder, ``last.pt`` and the final epoch's evaluation.
    """
    if not recipe and resume is None:
        raise DropError(
            "no recipe given.",
            hint="Pass a recipe (a file or a shipped name such as 'synthetic'), or resume a run folder.",
        )
    return run_training(resolve_recipe(recipe, overrides=overrides, resume=resume), output, resume, device, progress)

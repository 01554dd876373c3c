"""What a trained model needs to embed new images, and the network that does it.

`ModelSpec` is everything about a model that is not a weight: the input size and normalisation, the
part names (the embedding rows), the test-time choices of its recipe. It is read from a checkpoint's
recipe, and stored as JSON in an exported ONNX file, so that both load into the same `ReidModel`.

`InferenceNet` is the forward pass both run: normalise, DropNet, the test features
(`features.forward.test_features`, the formula `drop extract-features` uses) and the predicted label
map. Its input is what a user has after resizing: float RGB in [0, 1].
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from .._files import sha256_file
from .._version import __version__
from ..features.forward import flip_rows, test_features
from ..model import DropNet, input_normalisation
from ..parts import part_names, row_names
from ..recipe import Recipe, recipe_from_dict
from ..train.checkpoint import load_checkpoint, model_from_checkpoint


@dataclass(frozen=True)
class ModelSpec:
    """A trained model's inputs and outputs.

    Attributes:
        height, width: the input size; images of any size are resized to it.
        antialias: antialiased resizing (the recipe's ``data.antialias``).
        mean, std: RGB normalisation of [0, 1] images, applied inside the network.
        parts: the K part names; the embedding rows are ``names`` (global, foreground, parts).
        flip_tta: the mirrored image's embeddings are added (the recipe's ``eval.flip_tta``).
        part_embeddings: "pre_bnneck" [base] or "bnneck" part rows.
        embed_dim: D.
        checkpoint_sha256: the checkpoint the weights come from (a features file records the same).
        drop_version: the drop that made it.
    """

    height: int
    width: int
    antialias: bool
    mean: tuple[float, ...]
    std: tuple[float, ...]
    parts: tuple[str, ...]
    flip_tta: bool
    part_embeddings: str
    embed_dim: int
    checkpoint_sha256: str
    drop_version: str = __version__

    @property
    def names(self) -> tuple[str, ...]:
        return row_names(self.parts)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        fields = json.loads(text)
        return cls(**{**fields, **{k: tuple(fields[k]) for k in ("mean", "std", "parts")}})


def load_trained(checkpoint: str | Path) -> tuple[torch.nn.Module, ModelSpec, Recipe]:
    """The model of a drop checkpoint (eval mode, CPU), its spec and its recipe; a DropError if it is
    not one."""
    checkpoint = Path(checkpoint).expanduser()
    ckpt = load_checkpoint(checkpoint)
    recipe = recipe_from_dict(ckpt["recipe"])
    model = model_from_checkpoint(ckpt, source=checkpoint)
    assert isinstance(model, DropNet)
    norm = input_normalisation(model, pretrained=recipe.model.pretrained, weights=recipe.model.weights)
    spec = ModelSpec(
        height=recipe.data.height,
        width=recipe.data.width,
        antialias=recipe.data.antialias,
        mean=tuple(norm["mean"]),
        std=tuple(norm["std"]),
        parts=part_names(recipe.data.preset),
        flip_tta=recipe.eval.flip_tta,
        part_embeddings=recipe.eval.part_embeddings,
        embed_dim=recipe.model.embed_dim,
        checkpoint_sha256=sha256_file(checkpoint),
    )
    return model, spec, recipe


class InferenceNet(torch.nn.Module):
    """[N, 3, H, W] float RGB in [0, 1] -> embeddings [N, M, D] (L2-normalised rows ``spec.names``),
    visibility [N, K] float (1 = the part is seen), and, with ``parsing``, the label map [N, H/4, W/4]
    uint8 (0 = background, k = part k)."""

    def __init__(self, model: torch.nn.Module, spec: ModelSpec, *, parsing: bool = False):
        super().__init__()
        self.model, self.spec, self.parsing = model.eval(), spec, parsing
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.rows: torch.Tensor | None
        self.register_buffer("mean", torch.tensor(spec.mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(spec.std, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("rows", torch.from_numpy(flip_rows(spec.parts)) if spec.flip_tta else None)

    def forward(self, images: torch.Tensor, parsing: bool | None = None) -> tuple[torch.Tensor, ...]:
        """``parsing`` overrides the net's setting for one call (an export traces the setting)."""
        embeddings, visibility, logits = test_features(
            self.model, (images - self.mean) / self.std, self.rows, self.spec.part_embeddings
        )
        if self.parsing if parsing is None else parsing:
            return embeddings, visibility, logits.argmax(1).to(torch.uint8)
        return embeddings, visibility

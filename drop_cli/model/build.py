"""build_model: the recipe's ``model:`` section -> DropNet.

The only place that maps recipe keys to constructor arguments (the good half of fast-reid's
``from_config``). The keys are DropNet's keyword arguments with the same names (backbone,
pretrained, weights, last_stride_one, embed_dim, decouple, dpu, ppe, pooling, dpu_channels,
parsing_channels, ppe_height); ``num_classes`` and ``num_parts`` come from the data and the labels,
not from the recipe. A key set to None is dropped, so "unset" means DropNet's default; an unknown
key is a DropError naming the closest valid one.
"""

from __future__ import annotations

import inspect

from ..errors import lookup
from .drop_net import DropNet

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "MODEL_KEYS", "build_model", "input_normalisation"]

# [base] BPBreID's normalisation (data.norm_mean / norm_std), for networks that start from random weights.
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

# Recipe keys of the model section: DropNet's keyword arguments, less those the data decides.
MODEL_KEYS: tuple[str, ...] = tuple(
    name
    for name, p in inspect.signature(DropNet.__init__).parameters.items()
    if p.kind is inspect.Parameter.KEYWORD_ONLY and name not in ("num_classes", "num_parts")
)


def build_model(num_classes: int, num_parts: int, **model_section) -> DropNet:
    """A DropNet from the recipe's model section.

    Args:
        num_classes: training identities (0: no classifier, e.g. for feature extraction).
        num_parts: K, the parts of the parsing labels.
        **model_section: the ``model:`` keys (see MODEL_KEYS); None values are ignored.

    Returns:
        The DropNet. Raises DropError for an unknown key or an invalid combination.
    """
    valid = dict.fromkeys(MODEL_KEYS)
    for key in model_section:
        lookup(valid, key, "model key")
    kwargs = {key: value for key, value in model_section.items() if value is not None}
    return DropNet(num_classes=num_classes, num_parts=num_parts, **kwargs)


def input_normalisation(model: DropNet, *, pretrained: bool, weights: str | None) -> dict[str, tuple[float, ...]]:
    """``{"mean", "std"}`` of the images the network is trained and run on: what its backbone's weights
    expect (timm's pretrained config) when it starts from pretrained or local weights, ImageNet's
    (BPBreID's) when it starts from random weights. Decided by the recipe, so that a model rebuilt from a
    checkpoint is fed as it was trained."""
    if pretrained or weights:
        return {"mean": model.backbone.mean, "std": model.backbone.std}
    return {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}

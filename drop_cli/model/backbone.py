"""Multi-scale backbones through timm's ``features_only`` models.

DROP (Dou et al., arXiv 2401.18032) and BPBreID (Somers et al., WACV 2023) use HRNet-W32 [base].
``Backbone`` wraps ``timm.create_model(name, features_only=True, out_indices=...)`` and declares the
width and stride of every map it returns (``channels``, ``strides``) before any forward pass, so the
ReID concatenation and the DPU are sized from the backbone, never from hand-kept widths.

- ``hrnet_w32`` (default) [base]: ``out_indices=(1, 2, 3, 4)`` are the widened maps after HRNet's
  "incre" blocks, 128/256/512/1024 channels at strides 4/8/16/32; concatenated at stride 4 they are
  BPBreID's 1920-channel map. (timm's ``feature_location=''`` would give the raw 32/64/128/256
  branches instead, a much cheaper map; we keep BPBreID's.) Index 0 is a stride-2 stem level.
- ResNets (``resnet50``, ...) [base]: the ReID "last stride 1" trick, *not* timm's dilated
  ``output_stride=16``: the first block of the last stage gets stride 1 in its strided convolution
  and in its shortcut (a strided 1x1 conv gets stride 1, an average-pool shortcut becomes identity),
  with no dilation anywhere, so layer4 runs at stride 16 with the pretrained weights unchanged.
  ``resnet50`` then gives strides 4/8/16/16 and 256/512/1024/2048 channels.
- Small timm models (``test_resnet``, about 0.37M parameters) keep CPU tests fast. Any timm model
  that supports ``features_only`` works; pick ``out_indices`` so that the first map is at stride 4.

Weights [ours]: ``pretrained=True`` downloads ImageNet weights through timm (needs the network);
``weights=PATH`` loads a local timm or torchvision state dict (``.pth``/``.pt``/``.bin`` or
``.safetensors``, bare or under a ``state_dict``/``model`` key) into the feature model and reports
the keys it left out; ``weights`` wins over ``pretrained``. Failures are ``DropError`` with the fix.
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from ..errors import DropError

__all__ = ["Backbone", "WeightsReport", "load_backbone_weights"]

_logger = logging.getLogger(__name__)

# Prefixes a state dict's keys may carry (DataParallel, wrappers, a drop checkpoint's backbone).
_KEY_PREFIXES = ("", "module.", "model.", "backbone.", "backbone.model.", "module.backbone.model.")
# Below this share of matched keys a weights file is taken to be for another architecture.
_MIN_MATCHED = 0.5
# Modules whose exceptions mean "could not download", whatever their class.
_NETWORK_MODULES = ("huggingface_hub", "httpx", "httpcore", "requests", "urllib3", "urllib")


@dataclass
class WeightsReport:
    """What ``load_backbone_weights`` did with a state dict.

    Attributes:
        path: the file read.
        missing: model keys the file did not provide (they keep their random initialisation).
        unexpected: file keys the feature model has no use for (e.g. a classifier's ``fc.weight``).
    """

    path: str
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a .safetensors or torch file, unwrapped from a checkpoint dict if needed."""
    if not path.is_file():
        raise DropError(
            f"model weights file {str(path)!r} does not exist.",
            hint="Set model.weights to a local timm or torchvision state dict (.pth or .safetensors).",
        )
    state: Any
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # corrupt file, pickle with code in it, wrong format
        raise DropError(
            f"cannot read model weights {str(path)!r}: {error}",
            hint="Give a state dict saved with torch.save(model.state_dict()) or safetensors.",
        ) from error
    if isinstance(state, dict):
        for key in ("state_dict_ema", "model_ema", "state_dict", "model"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DropError(
            f"model weights {str(path)!r} hold no state dict of tensors.",
            hint="Give a state dict saved with torch.save(model.state_dict()) or safetensors.",
        )
    return state


def load_backbone_weights(model: nn.Module, path: str | Path, name: str = "backbone") -> WeightsReport:
    """Load a local timm or torchvision state dict into a timm feature model, in place.

    The file's keys are matched to the model's after removing the most useful of a few common
    prefixes (``module.``, ``model.``, ``backbone.``, ...). Keys the feature model lacks (a
    classifier) are reported as unexpected; model keys the file lacks are reported as missing,
    except BatchNorm's ``num_batches_tracked`` (old torchvision files have none).

    Args:
        model: the feature model (``timm.create_model(..., features_only=True)``).
        path: the weights file.
        name: the architecture, for messages.

    Returns:
        A WeightsReport. Raises DropError when the file cannot be read, when fewer than half of the
        model's keys are found in it (weights of another architecture), or when a shape differs.
    """
    path = Path(path).expanduser()
    source = _read_state_dict(path)
    target = model.state_dict()
    wanted = [k for k in target if not k.endswith("num_batches_tracked")]

    def matches(prefix: str) -> int:
        return sum(prefix + k in source for k in wanted)

    prefix = max(_KEY_PREFIXES, key=matches)
    mapped = {k[len(prefix) :]: v for k, v in source.items() if k.startswith(prefix) and k[len(prefix) :] in target}
    used = {prefix + k for k in mapped}
    matched = [k for k in wanted if k in mapped]
    if len(matched) < _MIN_MATCHED * len(wanted):
        example = next(iter(source), "nothing")
        raise DropError(
            f"model weights {str(path)!r} do not fit {name}: only {len(matched)} of its {len(wanted)} "
            f"parameters were found (the model expects e.g. {wanted[0]!r}, the file has {example!r}).",
            hint=f"Give a timm or torchvision state dict of {name}, or set model.weights to null.",
        )
    wrong = [
        f"{k} {tuple(v.shape)} vs {tuple(target[k].shape)}" for k, v in mapped.items() if v.shape != target[k].shape
    ]
    if wrong:
        raise DropError(
            f"model weights {str(path)!r} do not fit {name}: shapes differ for "
            + ", ".join(wrong[:3])
            + (f" and {len(wrong) - 3} more" if len(wrong) > 3 else "")
            + ".",
            hint=f"Give a state dict of {name} with the same widths.",
        )
    model.load_state_dict(mapped, strict=False)
    report = WeightsReport(
        str(path), missing=[k for k in wanted if k not in mapped], unexpected=sorted(k for k in source if k not in used)
    )
    if report.missing:
        _logger.warning(
            "%s: %d backbone parameters not in %s (kept at random init), e.g. %s",
            name,
            len(report.missing),
            path,
            ", ".join(report.missing[:5]),
        )
    if report.unexpected:
        _logger.info(
            "%s: %d entries of %s not used by the feature model, e.g. %s",
            name,
            len(report.unexpected),
            path,
            ", ".join(report.unexpected[:5]),
        )
    return report


def _is_network_error(error: BaseException) -> bool:
    """True for a failed download: OSError/ConnectionError, or anything raised by the HTTP stack."""
    if isinstance(error, (OSError, ConnectionError, TimeoutError)):
        return True
    return any(cls.__module__.split(".")[0] in _NETWORK_MODULES for cls in type(error).__mro__)


def _create_features_model(name: str, pretrained: bool, out_indices: tuple[int, ...]) -> nn.Module:
    """``timm.create_model(name, features_only=True)``, with DropErrors for the user's mistakes."""
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3)
        hint = f"Did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        raise DropError(
            f"unknown backbone {name!r}.", hint=hint + "Use a timm model name such as 'hrnet_w32' or 'resnet50'."
        )
    try:
        return timm.create_model(name, pretrained=pretrained, features_only=True, out_indices=out_indices)
    except Exception as error:
        if pretrained and _is_network_error(error):
            raise DropError(
                f"could not download the pretrained weights of {name} ({type(error).__name__}: {error}).",
                hint="Without network access, set `model.weights: PATH` to a local timm or torchvision state "
                "dict (.pth or .safetensors), or `model.pretrained: false` to start from random weights.",
            ) from error
        if isinstance(error, (RuntimeError, ValueError, IndexError, AssertionError)) and not pretrained:
            raise DropError(
                f"backbone {name!r} cannot give feature maps {out_indices}: {error}",
                hint="Use a timm model that supports features_only, e.g. 'hrnet_w32' or 'resnet50', "
                "or other out_indices.",
            ) from error
        raise


def _set_last_stride_one(model: nn.Module, stage_name: str) -> None:
    """Give the first block of ResNet stage ``stage_name`` stride 1 (no dilation), in place."""
    stage = getattr(model, stage_name, None)
    if not isinstance(stage, nn.Sequential) or len(stage) == 0:
        raise DropError(
            f"last_stride_one works on ResNet-like backbones only (no stage {stage_name!r}).",
            hint="Set last_stride_one to false for this backbone.",
        )
    block = stage[0]
    changed = False
    for parent in block.modules():
        for child_name, child in parent.named_children():
            if isinstance(child, nn.Conv2d) and tuple(child.stride) == (2, 2):
                child.stride = (1, 1)
                changed = True
            elif isinstance(child, nn.AvgPool2d) and child.stride in (2, (2, 2)):
                setattr(parent, child_name, nn.Identity())
                changed = True
            elif getattr(child, "stride", 1) not in (1, (1, 1)) and not isinstance(child, (nn.Conv2d, nn.AvgPool2d)):
                raise DropError(
                    f"last_stride_one cannot remove the stride of {type(child).__name__} in {stage_name}.",
                    hint="Set last_stride_one to false for this backbone.",
                )
    if not changed:
        raise DropError(
            f"last_stride_one found no stride-2 layer in {stage_name}.",
            hint="Set last_stride_one to false for this backbone.",
        )


class Backbone(nn.Module):
    """A timm ``features_only`` model returning one map per selected level, finest first.

    Args:
        name: timm model name: ``hrnet_w32`` [base], ``resnet50``, ``test_resnet``, ...
        pretrained: download ImageNet weights through timm (needs the network).
        weights: a local timm or torchvision state dict to load instead (wins over ``pretrained``).
        last_stride_one: ResNet family only (models with ``layer1``..``layer4``): run the last stage
            at stride 1 (the ReID trick, no dilation). Ignored by other architectures.
        out_indices: timm feature levels to return; ``(1, 2, 3, 4)`` is strides 4-32 for HRNet and
            ResNets.

    Attributes:
        channels: width of each returned map, e.g. ``(128, 256, 512, 1024)`` for hrnet_w32.
        strides: stride of each returned map w.r.t. the input, e.g. ``(4, 8, 16, 32)``.
        mean, std: the input normalisation the weights expect (timm's pretrained config).
        weights_report: a WeightsReport when ``weights`` was loaded, else None.
    """

    def __init__(
        self,
        name: str = "hrnet_w32",
        *,
        pretrained: bool = False,
        weights: str | Path | None = None,
        last_stride_one: bool = True,
        out_indices: tuple[int, ...] = (1, 2, 3, 4),
    ):
        super().__init__()
        self.name = name
        out_indices = tuple(out_indices)
        self.model = _create_features_model(name, pretrained and weights is None, out_indices)
        info: Any = self.model.feature_info  # timm FeatureInfo
        self.channels: tuple[int, ...] = tuple(info.channels())
        strides = list(info.reduction())
        modules = info.module_name()
        if last_stride_one and modules[-1] == "layer4" and hasattr(self.model, "layer1"):
            _set_last_stride_one(self.model, "layer4")
            strides[-1] //= 2
        self.strides: tuple[int, ...] = tuple(strides)
        cfg = getattr(self.model, "pretrained_cfg", None) or {}
        self.mean: tuple[float, ...] = tuple(cfg.get("mean", (0.485, 0.456, 0.406)))
        self.std: tuple[float, ...] = tuple(cfg.get("std", (0.229, 0.224, 0.225)))
        self.weights_report: WeightsReport | None = None
        if weights is not None:
            self.weights_report = load_backbone_weights(self.model, weights, name)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps of a batch.

        Args:
            images: [N, 3, H, W] normalised images.

        Returns:
            One map per level, ``[N, channels[i], H / strides[i], W / strides[i]]`` (rounded up).
        """
        return self.model(images)

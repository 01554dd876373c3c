"""Joint augmentation of an image and its body-part label map (torchvision.transforms.v2).

[base] BPBreID's training transforms (``torchreid/data/transforms.py``, albumentations): resize,
optional horizontal flip, zero padding of 10 + random crop back to the input size, optional colour
jitter, ImageNet normalisation, random erasing of one box; its recipes use ``['rc', 're']`` (crop,
erasing), Occluded-REID's adds ``'rf', 'cj'`` (flip, jitter). Geometry moves the image and the
``tv_tensors.Mask`` together, the mask with nearest-neighbour sampling; an erased box becomes
background in the label map (the masks are zeroed there).

Choices that differ from BPBreID's are options [ours]: ``antialias`` resizing (BPBreID's OpenCV
bilinear has none), ``flip_swap_sides`` (a flip also swaps the left and right parts, so a mirrored
left arm is labelled a right arm; BPBreID mirrors the masks unchanged), ``erasing="zhong"`` (Zhong et
al.'s area/aspect sampling, filled with 0; BPBreID's box is 15-65% of the height and of the width,
filled with (0.485, 0.456, 0.406) after normalisation).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from ..parts import mirror_permutation

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# [base] The value BPBreID's random erasing writes into the *normalised* image, per channel (albumentations'
# CoarseDropout with fill_value=[0.485, 0.456, 0.406], applied after Normalize).
BOX_FILL = (0.485, 0.456, 0.406)
# Recipe key data.erasing.
ERASINGS = ("box", "zhong")


Stats = Sequence[float]


def _normalise(image: torch.Tensor, mean: Stats, std: Stats) -> torch.Tensor:
    return F.normalize(F.to_dtype(image, torch.float32, scale=True), list(mean), list(std))


def _randint(low: int, high: int) -> int:
    """A uniform integer in [low, high], both included."""
    return int(torch.randint(low, high + 1, (1,)))


def _box(height: int, width: int) -> tuple[int, int, int, int]:
    """[base] BPBreID's erased box (top, left, h, w): h in [0.15, 0.65] x height, w likewise, anywhere inside."""
    h = _randint(int(height * 0.15), int(height * 0.65))
    w = _randint(int(width * 0.15), int(width * 0.65))
    return _randint(0, height - h), _randint(0, width - w), h, w


def _zhong_box(height: int, width: int, scale=(0.02, 0.4), ratio=(0.3, 3.3)) -> tuple[int, int, int, int] | None:
    """[ours] A random rectangle (top, left, h, w) covering ``scale`` of the area, as Zhong et al. sample it."""
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        area = height * width * torch.empty(1).uniform_(*scale).item()
        aspect = math.exp(torch.empty(1).uniform_(*log_ratio).item())
        h, w = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if 0 < h < height and 0 < w < width:
            return _randint(0, height - h), _randint(0, width - w), h, w
    return None


class TrainTransform:
    """uint8 image [3, h, w] + uint8 label map [h', w'] -> normalised float image [3, H, W] + uint8 map [H, W].

    The keyword arguments are the recipe's ``data:`` keys of the same names (drop_cli.recipe.DataConfig).

    Args:
        height, width: network input size.
        parts: the labels' part names (their left/right mirror, for ``flip_swap_sides``).
        pad: pixels of zero padding before the random crop back to (height, width).
        flip: random horizontal flip with probability 0.5.
        flip_swap_sides: a flip also swaps the ``left_*`` and ``right_*`` labels.
        random_erasing: probability of erasing one box.
        erasing: "box" [base] or "zhong" [ours].
        color_jitter: probability of a colour jitter of ``jitter_brightness`` / ``jitter_contrast`` /
            ``jitter_saturation`` (factors drawn in 1 +- each).
        antialias: antialiased resizing of the image.
        mean, std: the input normalisation (``model.input_normalisation``; ImageNet's by default).
    """

    def __init__(
        self,
        height: int,
        width: int,
        *,
        parts: Sequence[str],
        pad: int = 10,
        flip: bool = False,
        flip_swap_sides: bool = False,
        random_erasing: float = 0.5,
        erasing: str = "box",
        color_jitter: float = 0.0,
        jitter_brightness: float = 0.2,
        jitter_contrast: float = 0.15,
        jitter_saturation: float = 0.0,
        antialias: bool = False,
        mean: Stats = IMAGENET_MEAN,
        std: Stats = IMAGENET_STD,
    ):
        if erasing not in ERASINGS:
            raise ValueError(f"erasing must be one of {ERASINGS}, not {erasing!r}")
        self.size = (height, width)
        self.antialias, self.mean, self.std = antialias, tuple(mean), tuple(std)
        self.geometry = v2.Compose([v2.Pad(pad), v2.RandomCrop(self.size)]) if pad > 0 else None
        self.flip = flip
        self.mirror = torch.as_tensor(mirror_permutation(tuple(parts)), dtype=torch.uint8) if flip_swap_sides else None
        self.random_erasing, self.erasing = random_erasing, erasing
        self.color_jitter = color_jitter
        self.jitter = (
            v2.ColorJitter(brightness=jitter_brightness, contrast=jitter_contrast, saturation=jitter_saturation)
            if color_jitter > 0
            else None
        )

    def __call__(self, image: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        image = F.resize(tv_tensors.Image(image), list(self.size), antialias=self.antialias)
        mask = F.resize(tv_tensors.Mask(labels[None]), list(self.size))
        if self.geometry is not None:
            image, mask = self.geometry(image, mask)
        if self.flip and torch.rand(1).item() < 0.5:
            image, mask = F.horizontal_flip(image), F.horizontal_flip(mask)
            if self.mirror is not None:
                mask = self.mirror[mask.long()]
        if self.jitter is not None and torch.rand(1).item() < self.color_jitter:
            image = self.jitter(image)
        image, mask = (
            _normalise(image.as_subclass(torch.Tensor), self.mean, self.std),
            mask.as_subclass(torch.Tensor)[0],
        )
        if self.random_erasing > 0 and torch.rand(1).item() < self.random_erasing:
            box = _box(*self.size) if self.erasing == "box" else _zhong_box(*self.size)
            if box is not None:
                top, left, h, w = box
                fill = torch.tensor(BOX_FILL if self.erasing == "box" else (0.0, 0.0, 0.0))[:, None, None]
                image[:, top : top + h, left : left + w] = fill
                mask[top : top + h, left : left + w] = 0
        return image, mask


class EvalTransform:
    """Resize and normalise; the label map (when given) is resized with nearest sampling.

    Args:
        height, width: network input size.
        antialias: antialiased resizing of the image ([base] false, as BPBreID's OpenCV bilinear).
        mean, std: the normalisation the backbone's weights expect.
    """

    def __init__(
        self,
        height: int,
        width: int,
        *,
        antialias: bool = False,
        mean: Stats = IMAGENET_MEAN,
        std: Stats = IMAGENET_STD,
    ):
        self.size = [height, width]
        self.antialias, self.mean, self.std = antialias, tuple(mean), tuple(std)

    def __call__(self, image: torch.Tensor, labels: torch.Tensor | None = None):
        out = _normalise(F.resize(image, self.size, antialias=self.antialias), self.mean, self.std)
        if labels is None:
            return out, None
        return out, F.resize(tv_tensors.Mask(labels[None]), self.size).as_subclass(torch.Tensor)[0]

"""Joint augmentation of an image and its body-part label map (torchvision.transforms.v2).

Geometry (resize, pad + random crop, flip) moves the image and the `tv_tensors.Mask` together, the
mask with nearest-neighbour sampling. A horizontal flip also swaps the left and right parts of the
`eight` preset, because the mirrored person's left arm is drawn where a right arm would be.
Random erasing blanks a rectangle of the normalised image (value 0, the ImageNet mean) and turns the
same rectangle of the label map into background: the erased body is not visible any more.
"""
from __future__ import annotations

import math

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Label value -> label value after a horizontal flip (left/right parts swap in `eight`).
FLIP_PERMUTATION = {
    "eight": torch.tensor([0, 1, 3, 2, 4, 6, 5, 8, 7], dtype=torch.uint8),
    "five": torch.arange(6, dtype=torch.uint8),
}


def _normalise(image: torch.Tensor) -> torch.Tensor:
    return F.normalize(F.to_dtype(image, torch.float32, scale=True), IMAGENET_MEAN, IMAGENET_STD)


def _erase_box(height: int, width: int, scale=(0.02, 0.4), ratio=(0.3, 3.3)) -> tuple[int, int, int, int] | None:
    """A random rectangle (top, left, h, w) covering ``scale`` of the area, as Zhong et al. sample it."""
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        area = height * width * torch.empty(1).uniform_(*scale).item()
        aspect = math.exp(torch.empty(1).uniform_(*log_ratio).item())
        h, w = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if 0 < h < height and 0 < w < width:
            top = int(torch.randint(0, height - h + 1, (1,)))
            left = int(torch.randint(0, width - w + 1, (1,)))
            return top, left, h, w
    return None


class TrainTransform:
    """uint8 image [3, h, w] + uint8 label map [h', w'] -> normalised float image [3, H, W] + uint8 map [H, W].

    Args:
        height, width: network input size.
        preset: the labels' preset (for the left/right swap on flips).
        pad: pixels of zero padding before the random crop back to (height, width).
        flip: random horizontal flip with probability 0.5.
        random_erasing: probability of erasing one rectangle.
        color_jitter: brightness/contrast/saturation strength (0 = off).
    """

    def __init__(self, height: int, width: int, preset: str, pad: int = 10, flip: bool = True,
                 random_erasing: float = 0.5, color_jitter: float = 0.0):
        self.size = (height, width)
        self.geometry = v2.Compose([v2.Pad(pad), v2.RandomCrop(self.size)]) if pad > 0 else None
        self.flip_permutation = FLIP_PERMUTATION[preset] if flip else None
        self.random_erasing = random_erasing
        self.jitter = (v2.ColorJitter(brightness=color_jitter, contrast=color_jitter, saturation=color_jitter)
                       if color_jitter > 0 else None)

    def __call__(self, image: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        image = F.resize(tv_tensors.Image(image), list(self.size), antialias=True)
        mask = F.resize(tv_tensors.Mask(labels[None]), list(self.size))
        if self.geometry is not None:
            image, mask = self.geometry(image, mask)
        if self.flip_permutation is not None and torch.rand(1).item() < 0.5:
            image, mask = F.horizontal_flip(image), self.flip_permutation[F.horizontal_flip(mask).long()]
        if self.jitter is not None:
            image = self.jitter(image)
        image, mask = _normalise(image.as_subclass(torch.Tensor)), mask.as_subclass(torch.Tensor)[0]
        if self.random_erasing > 0 and torch.rand(1).item() < self.random_erasing:
            box = _erase_box(*self.size)
            if box is not None:
                top, left, h, w = box
                image[:, top:top + h, left:left + w] = 0
                mask[top:top + h, left:left + w] = 0
        return image, mask


class EvalTransform:
    """Resize and normalise; the label map (when given) is resized with nearest sampling."""

    def __init__(self, height: int, width: int):
        self.size = [height, width]

    def __call__(self, image: torch.Tensor, labels: torch.Tensor | None = None):
        out = _normalise(F.resize(image, self.size, antialias=True))
        if labels is None:
            return out, None
        return out, F.resize(tv_tensors.Mask(labels[None]), self.size).as_subclass(torch.Tensor)[0]

"""``render``: one synthetic image and its exact part map, a pure function of the item."""

from __future__ import annotations

import cv2
import numpy as np

from ..errors import DropError
from .canvas import (
    _GRAIN_SCALE,
    _H,
    _KERNEL3,
    _LABEL_LUT,
    _LIGHT_FALLOFF,
    _SHADE,
    _TEXTURE,
    _W,
    _add_noise,
    _Canvas,
    _tiles,
    _window,
)
from .figure import _draw_figure, _dress, _pose
from .look import _Camera, _cameras, _identity
from .plan import CAMERAS, SyntheticItem, _check
from .scene import _background, _occlude


def _compose(
    rng: np.random.Generator, pixels: np.ndarray, palette: np.ndarray, image: np.ndarray, cam: _Camera
) -> np.ndarray:
    """Paint the canvas over the background ``image`` (in place): materials coloured, shaded towards
    every region edge, textured and lit from above; then the camera's optics, tone and sensor noise."""
    region, material = pixels[:, :, 0], pixels[:, :, 1]
    inner = cv2.compare(cv2.dilate(region, _KERNEL3), cv2.erode(region, _KERNEL3), cv2.CMP_EQ)
    depth = cv2.distanceTransform(inner, cv2.DIST_L1, 3, dstType=cv2.CV_8U)
    factor = cv2.LUT(depth, _SHADE) * (1.0 + cv2.LUT(material, _TEXTURE) * _window(_tiles().smooth, rng))
    factor = cv2.convertScaleAbs(factor * _LIGHT_FALLOFF, alpha=128)
    colours = np.clip(palette, 0, 255).astype(np.uint8)[None]
    colour = cv2.multiply(
        cv2.LUT(cv2.merge((material, material, material)), colours), cv2.merge((factor, factor, factor)), scale=1 / 128
    )
    cv2.copyTo(colour, cv2.compare(region, 0, cv2.CMP_GT), image)
    image = cv2.GaussianBlur(image, (0, 0), cam.blur * rng.uniform(0.7, 1.3))
    gain = np.array(cam.cast) * rng.uniform(0.93, 1.07, 3)
    contrast = cam.contrast * rng.uniform(0.85, 1.15)
    offset = 128 * (1 - contrast) + cam.brightness + rng.uniform(-20, 20)
    tone = np.clip(np.arange(256)[:, None] * gain * contrast + offset, 0, 255).astype(np.uint8)[None]
    image = cv2.LUT(image, tone)
    noise = cam.noise * rng.uniform(0.7, 1.3)
    return _add_noise(image, _window(_tiles().grain, rng), noise / _GRAIN_SCALE)


def render(item: SyntheticItem, num_ids: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(image RGB uint8 [256, 128, 3], parts uint8 [256, 128] with 0 background and 1..8 the `eight`
    preset's parts). A pure function of its arguments: byte-identical for the same inputs."""
    _check(num_ids, seed)
    if not 1 <= item.pid <= num_ids:
        raise DropError(f"synthetic item {item.relpath!r} has pid {item.pid}, outside 1..{num_ids}.")
    if not 1 <= item.camid <= CAMERAS:
        raise DropError(f"synthetic item {item.relpath!r} has camera {item.camid}, outside 1..{CAMERAS}.")
    rng = np.random.default_rng(item.seed)
    cam = _cameras(seed)[item.camid - 1]
    look = _identity(seed, item.pid)
    background = _background(rng, cam)
    palette = np.zeros((256, 3), np.float32)
    _dress(palette, 0, look, rng)
    height = _H * rng.uniform(0.8, 0.94)
    body = _pose(
        rng,
        look,
        bool(rng.random() < cam.front),
        height,
        _W / 2 + rng.uniform(-9, 9),
        _H - rng.uniform(2, 0.97 * _H - height),
    )
    pixels = np.zeros((_H, _W, 2), np.uint8)
    _draw_figure(_Canvas(pixels), look, body)
    if item.occluded:
        _occlude(np.random.default_rng([item.seed, 1]), pixels, palette, seed, num_ids, item.pid, body)
    image = _compose(rng, pixels, palette, background, cam)
    return image, _LABEL_LUT[pixels[:, :, 0]]

"""The two-channel canvas figures are drawn into (region and material per pixel), its constants and drawing
helpers, and the shared noise tiles."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

from ..parts import PRESETS

IMAGE_HEIGHT, IMAGE_WIDTH = 256, 128

_H, _W = IMAGE_HEIGHT, IMAGE_WIDTH
_PART = {name: i + 1 for i, name in enumerate(PRESETS["eight"])}
_HEAD, _TORSO = _PART["head"], _PART["torso"]
_ARM = {1: _PART["left_arm"], -1: _PART["right_arm"]}  # keyed by the person's side: +1 left, -1 right
_LEG = {1: _PART["left_leg"], -1: _PART["right_leg"]}
_FOOT = {1: _PART["left_foot"], -1: _PART["right_foot"]}

# Regions: 1..8 target parts, 9..16 the parts of an occluding person, 17+ object components.
_OTHER_PERSON = 8
_OBJECT = 17
_LABEL_LUT = np.array([i if i <= 8 else 0 for i in range(256)], dtype=np.uint8)

# Material slots of a figure; an occluding person uses the same slots shifted by _OTHER_MATERIALS.
_SKIN, _HAIR, _EYE, _LIP, _SHIRT, _PATTERN, _LOGO, _JACKET, _LOWER, _LEGWEAR, _SHOE, _HAT, _BAG, _STRAP = range(1, 15)
_OTHER_MATERIALS = 16
# Object materials.
_MAIN, _ALT, _DARK, _LIGHT, _GLASS, _LEAF, _LEAF2 = range(33, 40)


def _texture_table() -> np.ndarray:
    """How strongly the shared noise texture modulates each material (fabric weave, hair, foliage),
    as a 256-entry table so that OpenCV's LUT maps the material channel to it."""
    table = np.zeros(256, np.float32)
    figure = {
        _SKIN: 0.03,
        _HAIR: 0.25,
        _SHIRT: 0.08,
        _PATTERN: 0.08,
        _JACKET: 0.1,
        _LOWER: 0.1,
        _LEGWEAR: 0.05,
        _SHOE: 0.08,
        _HAT: 0.1,
        _BAG: 0.1,
    }
    for slot, strength in figure.items():
        table[[slot, slot + _OTHER_MATERIALS]] = strength
    table[[_MAIN, _ALT, _DARK, _LIGHT, _GLASS, _LEAF, _LEAF2]] = (0.15, 0.12, 0.1, 0.05, 0.2, 0.6, 0.6)
    return table


_TEXTURE = _texture_table()
# Shading by the (L1) distance to the nearest region edge: darker rims give limbs a rounded look.
_SHADE = (1.0 - 0.45 * np.square(1.0 - np.minimum(np.arange(256, dtype=np.float32) / 5, 1.0))).astype(np.float32)
_LIGHT_FALLOFF = (1.1 - 0.22 * np.arange(_H, dtype=np.float32)[:, None] / _H).astype(np.float32)  # light from above
_KERNEL3 = np.ones((3, 3), np.uint8)

_NOISE_ZERO = 128  # the zero of the uint8 noise tiles
_GRAIN_SCALE = 32  # grey levels per unit of sensor noise in its tile
_SHIFT = 4  # OpenCV fixed-point bits: coordinates are drawn with 1/16 pixel precision
_ONE = float(1 << _SHIFT)


def _fixed(p) -> tuple[int, int]:
    return round(p[0] * _ONE), round(p[1] * _ONE)


def _polygon(points) -> np.ndarray:
    return np.array([_fixed(p) for p in points], np.int32)


class _Canvas:
    """A (H, W, 2) uint8 image of regions and materials that every primitive writes in one call.

    ``region_base``/``material_base`` shift what a figure writes, so the same drawing code serves
    the target (parts 1..8) and an occluding person (regions 9..16, its own materials)."""

    __slots__ = ("material_base", "pixels", "region_base")

    def __init__(self, pixels: np.ndarray, region_base: int = 0, material_base: int = 0):
        self.pixels = pixels
        self.region_base = region_base
        self.material_base = material_base

    def _value(self, region: int, material: int) -> tuple[int, int]:
        return region + self.region_base, material + self.material_base

    def poly(self, points, region: int, material: int) -> None:
        cv2.fillPoly(self.pixels, [_polygon(points)], self._value(region, material), cv2.LINE_8, _SHIFT)

    def ellipse(
        self, centre, axes, angle: float, region: int, material: int, start: float = 0.0, end: float = 360.0
    ) -> None:
        cv2.ellipse(
            self.pixels,
            _fixed(centre),
            _fixed((max(axes[0], 0.5), max(axes[1], 0.5))),
            angle,
            start,
            end,
            self._value(region, material),
            -1,
            cv2.LINE_8,
            _SHIFT,
        )

    def circle(self, centre, radius: float, region: int, material: int) -> None:
        cv2.circle(
            self.pixels,
            _fixed(centre),
            round(max(radius, 0.5) * _ONE),
            self._value(region, material),
            -1,
            cv2.LINE_8,
            _SHIFT,
        )

    def capsule(self, p0, p1, r0: float, r1: float, region: int, material: int) -> None:
        """A tapered limb: a quadrilateral of half-widths r0, r1 with round ends."""
        dx, dy = p1[0] - p0[0], p1[1] - p0[1]
        norm = math.hypot(dx, dy) or 1.0
        nx, ny = -dy / norm, dx / norm
        quad = (
            (p0[0] + nx * r0, p0[1] + ny * r0),
            (p1[0] + nx * r1, p1[1] + ny * r1),
            (p1[0] - nx * r1, p1[1] - ny * r1),
            (p0[0] - nx * r0, p0[1] - ny * r0),
        )
        cv2.fillConvexPoly(self.pixels, _polygon(quad), self._value(region, material), cv2.LINE_8, _SHIFT)
        self.circle(p0, r0, region, material)
        self.circle(p1, r1, region, material)


def _lerp(p, q, t: float) -> tuple[float, float]:
    return p[0] + (q[0] - p[0]) * t, p[1] + (q[1] - p[1]) * t


def _step(p, length: float, angle: float) -> tuple[float, float]:
    """The point ``length`` away from ``p`` in image direction ``angle`` (0 = straight down)."""
    return p[0] + length * math.sin(angle), p[1] + length * math.cos(angle)


@dataclass(frozen=True)
class _Tiles:
    """Noise made once; images take randomly offset windows of it instead of drawing fresh noise.

    The colour tiles are uint8 around 128 (``_NOISE_ZERO``) so that OpenCV adds them to uint8 images
    on its fast same-type path."""

    smooth: np.ndarray  # (2H, 2W) float32 in [-1, 1]: multi-scale texture for figures and objects
    smooth3: np.ndarray  # (2H, 2W, 3) uint8: 128 + 127 x a colour version, for backgrounds
    grain: np.ndarray  # (H + 32, W + 32, 3) uint8: 128 + 32 x unit normal noise, for the sensor


@functools.lru_cache(maxsize=1)
def _tiles() -> _Tiles:
    rng = np.random.default_rng(20240131)

    def smooth() -> np.ndarray:
        out = 0.3 * rng.standard_normal((2 * _H, 2 * _W)).astype(np.float32)
        for cells, weight in ((8, 0.5), (32, 0.35), (128, 0.25)):
            grid = rng.standard_normal((cells * 2, cells)).astype(np.float32)
            out += weight * cv2.resize(grid, (2 * _W, 2 * _H), interpolation=cv2.INTER_CUBIC)
        return np.clip(out / (3 * out.std()), -1, 1)

    grey = smooth()
    colour = np.stack([grey + 0.5 * smooth() for _ in range(3)], axis=2) / 1.5
    grain = rng.standard_normal((_H + 32, _W + 32, 3))
    return _Tiles(grey, _to_uint8(_NOISE_ZERO + 127 * colour), _to_uint8(_NOISE_ZERO + _GRAIN_SCALE * grain))


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.round(values), 0, 255).astype(np.uint8)


def _add_noise(image: np.ndarray, tile: np.ndarray, scale: float) -> np.ndarray:
    """``image + scale * (tile - 128)``, saturated to uint8."""
    return cv2.addWeighted(image, 1.0, tile, scale, -_NOISE_ZERO * scale, dtype=cv2.CV_8U)


def _window(tile: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    oy = int(rng.integers(0, tile.shape[0] - _H + 1))
    ox = int(rng.integers(0, tile.shape[1] - _W + 1))
    return tile[oy : oy + _H, ox : ox + _W]

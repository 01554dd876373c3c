"""Synthetic occluded pedestrians: a deterministic ReID dataset with exact body-part maps.

`plan` lists every image of a dataset in the Occluded-Duke layout and naming; `render` draws one of
them: an RGB crop and its part map in the `eight` preset. The file I/O, worker processes and CLI live
elsewhere and only call these two functions.

Design decisions:

- Everything is a pure function of (num_ids, seed) and the item. Each item carries its own seed
  (derived from the global seed and its index), identities and cameras are derived from the global
  seed alone, so any image can be rendered alone, in any order, in any process, byte-identically.
- Figures are drawn with OpenCV primitives into one two-channel canvas: channel 0 holds the region
  (target body part 1..8, occluding person 9..16, object parts 17+), channel 1 the material (skin,
  shirt, ...). Each primitive writes both channels in one call, so the part map is exactly the
  raster of the image; shading, texture, blur and noise are applied afterwards to the image only.
  Primitives are not anti-aliased (an anti-aliased edge pixel would have no exact label); the
  optical blur of every camera softens the edges instead.
- Accessories take the label of the body part that carries them (hat: head, backpack and shoulder
  bag: torso); the neck is head; the pelvis (waist to crotch) is torso; a skirt is split into the
  left and right leg at the body's midline. Occluders, occluding people included, are background.
- Figures face the camera (front) or walk away from it (back); `left_arm` is always the person's
  left arm, so it appears on the image's right in a front view and on its left in a back view.
- Proportions follow adult anthropometry in units of the body height H: head 1/7 to 1/8 of H,
  shoulders about 0.26 H wide and wider than the hips, elbows at the waist, wrists at the crotch,
  knees at 0.29 H above the floor; a walking pose swings the arms and legs in depth (foreshortened
  in the image) and bends elbows and knees so that the joints show.
- Identity lives in appearance only (clothing colours from a small weighted palette, patterns,
  jacket, lower garment, accessories, build), so some identities look alike; each image jitters the
  colours, and each camera has its own background style, colour cast, brightness, blur and noise.
- Occluders (cars, boxes, bushes, pillars, tree trunks, awnings, foliage, other people) are placed
  from the target's pixel profile so that they hide a sampled 30-60% of its part pixels. They use
  their own random stream: the same item with ``occluded=False`` is the identical scene without them.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import DropError
from ..parts import PRESETS

IMAGE_HEIGHT, IMAGE_WIDTH = 256, 128
CAMERAS = 6
MIN_IDS = 4

SPLIT_FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}

# Split sizes (per identity unless stated). With 100 ids: ~900 train, ~100 query, ~450 gallery images.
_TRAIN_IMAGES = (14, 22)  # inclusive range per train identity
_QUERY_IMAGES = 2  # per query identity, one more with probability _THIRD_QUERY
_THIRD_QUERY = 0.25
_GALLERY_IMAGES = (7, 11)  # per test identity
_GALLERY_ONLY_SHARE = 0.1  # test identities with no query (gallery distractors)
_IDENTITY_CAMERAS = (3, 5)  # how many of the cameras see one identity
_TRAIN_OCCLUDED = 0.2
_GALLERY_OCCLUDED = 0.1
_COVERAGE = (0.3, 0.6)  # share of the target's part pixels an occluder hides

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
    figure = {_SKIN: 0.03, _HAIR: 0.25, _SHIRT: 0.08, _PATTERN: 0.08, _JACKET: 0.1, _LOWER: 0.1, _LEGWEAR: 0.05,
              _SHOE: 0.08, _HAT: 0.1, _BAG: 0.1}
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

# Palettes (RGB). Weights favour the dark and neutral clothes that dominate street scenes.
_CLOTHES = np.array([
    (22, 22, 26), (50, 50, 56), (105, 105, 110), (165, 165, 168), (228, 226, 220), (28, 36, 72),
    (45, 78, 150), (120, 160, 205), (150, 28, 32), (95, 25, 35), (220, 130, 160), (220, 115, 40),
    (215, 190, 55), (38, 110, 58), (90, 95, 48), (185, 165, 125), (95, 62, 40), (90, 55, 125),
    (30, 115, 120),
], np.float32)
_CLOTHES_W = np.array([14, 9, 7, 5, 9, 7, 6, 4, 5, 3, 3, 2, 2, 3, 3, 4, 4, 2, 2], np.float64)
_TROUSERS = np.array([
    (22, 22, 26), (50, 50, 56), (55, 75, 115), (28, 36, 72), (110, 135, 175), (110, 110, 115),
    (180, 160, 120), (90, 60, 40), (88, 92, 48), (225, 222, 215),
], np.float32)
_TROUSERS_W = np.array([18, 8, 14, 7, 5, 5, 5, 3, 3, 2], np.float64)
_SHOES = np.array([(20, 20, 22), (235, 235, 232), (90, 58, 35), (110, 110, 115), (160, 30, 35), (40, 60, 120)],
                  np.float32)
_SHOES_W = np.array([10, 7, 4, 3, 1, 1], np.float64)
_SKINS = np.array([(242, 205, 180), (225, 180, 150), (200, 150, 115), (170, 120, 85), (130, 88, 60), (95, 65, 45)],
                  np.float32)
_HAIRS = np.array([(18, 15, 14), (50, 35, 25), (95, 65, 40), (190, 160, 105), (150, 150, 150), (120, 55, 30)],
                  np.float32)
_HAIRS_W = np.array([10, 8, 4, 2, 1, 1], np.float64)
_CARS = np.array([(230, 230, 232), (160, 165, 170), (30, 32, 36), (140, 25, 30), (35, 60, 120), (70, 80, 70)],
                 np.float32)

_PATTERNS = ("solid", "hstripes", "vstripes", "checks", "logo")
_PATTERNS_W = np.array([45, 15, 10, 10, 20], np.float64)
_LOWER_KINDS = ("trousers", "shorts", "skirt")
_LOWER_W = np.array([75, 13, 12], np.float64)


# ----------------------------------------------------------------------------- drawing helpers


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

    def ellipse(self, centre, axes, angle: float, region: int, material: int,
                start: float = 0.0, end: float = 360.0) -> None:
        cv2.ellipse(self.pixels, _fixed(centre), _fixed((max(axes[0], 0.5), max(axes[1], 0.5))), angle, start, end,
                    self._value(region, material), -1, cv2.LINE_8, _SHIFT)

    def circle(self, centre, radius: float, region: int, material: int) -> None:
        cv2.circle(self.pixels, _fixed(centre), round(max(radius, 0.5) * _ONE),
                   self._value(region, material), -1, cv2.LINE_8, _SHIFT)

    def capsule(self, p0, p1, r0: float, r1: float, region: int, material: int) -> None:
        """A tapered limb: a quadrilateral of half-widths r0, r1 with round ends."""
        dx, dy = p1[0] - p0[0], p1[1] - p0[1]
        norm = math.hypot(dx, dy) or 1.0
        nx, ny = -dy / norm, dx / norm
        quad = ((p0[0] + nx * r0, p0[1] + ny * r0), (p1[0] + nx * r1, p1[1] + ny * r1),
                (p1[0] - nx * r1, p1[1] - ny * r1), (p0[0] - nx * r0, p0[1] - ny * r0))
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
    return tile[oy:oy + _H, ox:ox + _W]


# ----------------------------------------------------------------------------- identities and cameras


@dataclass(frozen=True)
class _Look:
    """What makes an identity recognisable: garments, colours (RGB) and build."""

    skin: tuple[float, ...]
    hair: tuple[float, ...]
    hair_style: str  # "short", "long", "buzz"
    shirt: tuple[float, ...]
    pattern: str  # one of _PATTERNS
    pattern_colour: tuple[float, ...]
    pattern_period: float  # pixels at a body height of 220
    logo_shape: int
    short_sleeves: bool
    jacket: tuple[float, ...] | None  # an open jacket over the shirt
    lower_kind: str  # one of _LOWER_KINDS
    lower: tuple[float, ...]
    skirt: float  # skirt length below the hip joints, as a fraction of the body height
    legwear: tuple[float, ...]  # bare legs (skin) or tights under shorts and skirts
    shoes: tuple[float, ...]
    hat: str | None  # "cap", "beanie"
    hat_colour: tuple[float, ...]
    bag: str | None  # "backpack", "shoulder"
    bag_colour: tuple[float, ...]
    bag_side: int  # the side (+1 left, -1 right) where a shoulder bag hangs
    shoulders: float  # width factors
    hips: float
    limbs: float  # limb thickness factor
    head_ratio: float  # body height / head height


def _pick(rng: np.random.Generator, colours: np.ndarray, weights: np.ndarray) -> tuple[float, ...]:
    return tuple(colours[rng.choice(len(colours), p=weights / weights.sum())].tolist())


@functools.lru_cache(maxsize=16384)
def _identity(seed: int, pid: int) -> _Look:
    """The look of identity ``pid``, from its own random stream (independent of the dataset size)."""
    rng = np.random.default_rng([seed, 1, pid])
    skin = tuple(_SKINS[rng.integers(len(_SKINS))].tolist())
    hair_style = ("short", "long", "buzz")[rng.choice(3, p=(0.55, 0.33, 0.12))]
    pattern = _PATTERNS[rng.choice(len(_PATTERNS), p=_PATTERNS_W / _PATTERNS_W.sum())]
    lower_kind = _LOWER_KINDS[rng.choice(3, p=_LOWER_W / _LOWER_W.sum())]
    bare_legs = rng.random() < 0.7
    hat = ("cap", "beanie", None, None, None, None, None, None, None, None)[rng.integers(10)]
    bag = ("backpack", "backpack", "shoulder", "shoulder", None, None, None, None, None, None)[rng.integers(10)]
    return _Look(
        skin=skin,
        hair=_pick(rng, _HAIRS, _HAIRS_W),
        hair_style=hair_style,
        shirt=_pick(rng, _CLOTHES, _CLOTHES_W),
        pattern=pattern,
        pattern_colour=_pick(rng, _CLOTHES, _CLOTHES_W),
        pattern_period=float(rng.uniform(7, 14)),
        logo_shape=int(rng.integers(4)),
        short_sleeves=bool(rng.random() < 0.35),
        jacket=_pick(rng, _CLOTHES, _CLOTHES_W) if rng.random() < 0.3 else None,
        lower_kind=lower_kind,
        lower=_pick(rng, _TROUSERS, _TROUSERS_W) if lower_kind != "skirt" else _pick(rng, _CLOTHES, _CLOTHES_W),
        skirt=float(rng.uniform(0.14, 0.3)),
        legwear=skin if bare_legs else _pick(rng, _TROUSERS[:4], _TROUSERS_W[:4]),
        shoes=_pick(rng, _SHOES, _SHOES_W),
        hat=hat,
        hat_colour=_pick(rng, _CLOTHES, _CLOTHES_W),
        bag=bag,
        bag_colour=_pick(rng, _CLOTHES, _CLOTHES_W),
        bag_side=int(rng.choice((-1, 1))),
        shoulders=float(rng.uniform(0.85, 1.12)),
        hips=float(rng.uniform(0.9, 1.12)),
        limbs=float(rng.uniform(0.85, 1.2)),
        head_ratio=float(rng.uniform(7.0, 8.0)),
    )


@dataclass(frozen=True)
class _Camera:
    """A camera's fixed conditions; each image jitters around them."""

    style: str  # "street", "park", "hall", "plaza"
    wall: tuple[float, ...]
    wall2: tuple[float, ...]
    ground: tuple[float, ...]
    accent: tuple[float, ...]
    horizon: float  # fraction of the crop height
    cast: tuple[float, ...]  # per-channel gain
    brightness: float
    contrast: float
    blur: float  # Gaussian sigma in pixels
    noise: float  # sensor noise sigma (grey levels)
    texture: float
    front: float  # probability that a person faces this camera


@functools.lru_cache(maxsize=64)
def _cameras(seed: int) -> tuple[_Camera, ...]:
    rng = np.random.default_rng([seed, 2])
    styles = ("street", "park", "hall", "plaza")
    out = []
    for cam in range(CAMERAS):
        wall = rng.uniform(70, 200) * np.exp(rng.normal(0, 0.15, 3))  # muted, slightly tinted greys
        out.append(_Camera(
            style=styles[(cam + int(rng.integers(2))) % len(styles)],
            wall=tuple(np.clip(wall, 0, 255).tolist()),
            wall2=tuple(np.clip(wall * rng.uniform(0.6, 1.2, 3), 0, 255).tolist()),
            ground=tuple((rng.uniform(60, 160) * np.exp(rng.normal(0, 0.1, 3))).tolist()),
            accent=tuple(rng.uniform(20, 235, 3).tolist()),
            horizon=float(rng.uniform(0.45, 0.75)),
            cast=tuple(rng.uniform(0.85, 1.15, 3).tolist()),
            brightness=float(rng.uniform(-25, 20)),
            contrast=float(rng.uniform(0.75, 1.1)),
            blur=float(rng.uniform(0.6, 1.4)),
            noise=float(rng.uniform(2, 7)),
            texture=float(rng.uniform(0.05, 0.2)),
            front=float(rng.uniform(0.3, 0.7)),
        ))
    return tuple(out)


# ----------------------------------------------------------------------------- figures


@dataclass(frozen=True)
class _Body:
    """One figure's 2-D skeleton in image pixels. ``s`` is +1 when the person faces the camera (their
    left side is on the image's right), -1 when they walk away; per-side points are keyed by
    +1 (left) and -1 (right)."""

    s: int
    height: float  # body height H in pixels
    unit: float  # head height
    cx: float
    top: float  # top of the skull
    y_shoulder: float
    y_waist: float
    y_hip: float
    y_hem: float
    shoulder: dict[int, tuple[float, float]]
    elbow: dict[int, tuple[float, float]]
    wrist: dict[int, tuple[float, float]]
    hand_end: dict[int, tuple[float, float]]  # fingertips
    hip: dict[int, tuple[float, float]]
    knee: dict[int, tuple[float, float]]
    ankle: dict[int, tuple[float, float]]
    half: dict[str, float]  # half-widths: "shoulder", "chest", "waist", "hip", "neck"
    radius: dict[str, float]  # limb radii: "upper_arm", "elbow", "wrist", "thigh", "knee", "ankle"


def _pose(rng: np.random.Generator, look: _Look, front: bool, height: float, cx: float, foot_y: float) -> _Body:
    """A walking pose: arms and legs swing in depth (foreshortened in the image) with bent joints."""
    H = height
    unit = H / look.head_ratio
    phase = rng.uniform(0, 2 * math.pi)
    arm_swing, leg_swing, knee_bend = rng.uniform(0.25, 0.55), rng.uniform(0.2, 0.45), rng.uniform(0.5, 0.9)
    y_shoulder = unit * 1.36
    y_hip = H * rng.uniform(0.465, 0.495)
    half = {
        "shoulder": 0.13 * H * look.shoulders,
        "chest": 0.105 * H * look.shoulders,
        "waist": 0.085 * H * look.hips,
        "hip": 0.095 * H * look.hips,
        "neck": 0.031 * H,
    }
    t = look.limbs
    radius = {"upper_arm": 0.024 * H * t, "elbow": 0.019 * H * t, "wrist": 0.014 * H * t,
              "thigh": 0.046 * H * t, "knee": 0.03 * H * t, "ankle": 0.019 * H * t}
    s = 1 if front else -1
    shoulder, elbow, wrist, hand_end, hip, knee, ankle = {}, {}, {}, {}, {}, {}, {}
    for side in (1, -1):
        out = s * side  # image x direction of this side
        # Arm: swings opposite to the leg on the same side; the forward arm bends more.
        swing = -arm_swing * math.sin(phase) * side
        flex = rng.uniform(0.15, 0.45) + 0.6 * max(0.0, swing)
        abduct = rng.uniform(0.06, 0.2)
        shoulder[side] = (cx + out * (half["shoulder"] - radius["upper_arm"] * 0.9), y_shoulder + 0.02 * H)
        elbow[side] = _step(shoulder[side], 0.186 * H * math.cos(swing), out * abduct)
        fore_angle = out * (abduct - rng.uniform(0.15, 0.35))
        fore = max(0.35, math.cos(swing + flex))
        wrist[side] = _step(elbow[side], 0.146 * H * fore, fore_angle)
        hand_end[side] = _step(wrist[side], 0.085 * H * max(0.45, fore), fore_angle)
        # Leg: the thigh swings forward and back; the swinging leg bends its knee.
        thigh = leg_swing * math.sin(phase) * side
        bend = 0.08 + knee_bend * max(0.0, math.cos(phase) * side)
        spread = rng.uniform(0.02, 0.08)
        hip[side] = (cx + out * 0.048 * H * look.hips, y_hip)
        knee[side] = _step(hip[side], (0.715 * H - y_hip) * math.cos(thigh), out * spread)
        ankle[side] = _step(knee[side], 0.24 * H * math.cos(thigh - bend), -out * (spread + rng.uniform(0.0, 0.05)))
    # The lower ankle stands on the ground: shift the whole body so its sole is at foot_y.
    dy = foot_y - 0.045 * H - max(ankle[1][1], ankle[-1][1])
    moved = [{k: (p[0], p[1] + dy) for k, p in d.items()} for d in (shoulder, elbow, wrist, hand_end, hip, knee, ankle)]
    return _Body(
        s=s, height=H, unit=unit, cx=cx, top=dy, y_shoulder=y_shoulder + dy, y_waist=0.39 * H + dy,
        y_hip=y_hip + dy, y_hem=H * (0.5 if look.jacket is None else 0.53) + dy,
        shoulder=moved[0], elbow=moved[1], wrist=moved[2], hand_end=moved[3], hip=moved[4], knee=moved[5],
        ankle=moved[6], half=half, radius=radius,
    )


def _draw_legs(c: _Canvas, look: _Look, b: _Body) -> None:
    r, H = b.radius, b.height
    loose = 1.2 if look.lower_kind == "trousers" else 1.0
    for side in (1, -1):
        leg = _LEG[side]
        hip, knee, ankle = b.hip[side], b.knee[side], b.ankle[side]
        skin = _LEGWEAR if look.lower_kind != "trousers" else _LOWER
        c.capsule(hip, knee, r["thigh"] * loose, r["knee"] * loose, leg, skin)
        c.capsule(knee, ankle, r["knee"] * loose * 1.05, r["ankle"] * loose, leg, skin)
        if look.lower_kind == "shorts":
            c.capsule(hip, _lerp(hip, knee, 0.7), r["thigh"] * 1.25, r["knee"] * 1.4, leg, _LOWER)
        c.ellipse((ankle[0] + b.s * side * 0.006 * H, ankle[1] + 0.026 * H), (0.027 * H, 0.024 * H),
                  0, _FOOT[side], _SHOE)


def _draw_torso(c: _Canvas, look: _Look, b: _Body) -> None:
    h, H, cx = b.half, b.height, b.cx
    neck_y = b.y_shoulder - 0.012 * H
    # Pelvis (waist to crotch, in the lower garment) is torso; the shirt hem covers its top.
    crotch = b.y_hip + 0.05 * H
    c.poly(((cx - h["waist"], b.y_waist), (cx + h["waist"], b.y_waist), (cx + h["hip"], b.y_hip),
            (cx + 0.02 * H, crotch), (cx - 0.02 * H, crotch), (cx - h["hip"], b.y_hip)), _TORSO, _LOWER)
    if look.lower_kind == "skirt":
        hem = b.y_hip + look.skirt * H
        for side in (1, -1):
            x = b.s * side
            c.poly(((cx, b.y_waist), (cx + x * h["waist"], b.y_waist), (cx + x * h["hip"] * 1.05, b.y_hip),
                    (cx + x * h["hip"] * 1.3, hem), (cx, hem)), _LEG[side], _LOWER)
    outer = _SHIRT if look.jacket is None else _JACKET
    sh, ch = h["shoulder"], h["chest"]
    top = b.y_shoulder
    body = ((cx - h["neck"] * 1.6, neck_y), (cx - sh * 0.9, top + 0.004 * H), (cx - sh, top + 0.035 * H),
            (cx - ch, top + 0.09 * H), (cx - h["waist"] * 1.04, b.y_waist), (cx - h["hip"] * 1.06, b.y_hem),
            (cx + h["hip"] * 1.06, b.y_hem), (cx + h["waist"] * 1.04, b.y_waist), (cx + ch, top + 0.09 * H),
            (cx + sh, top + 0.035 * H), (cx + sh * 0.9, top + 0.004 * H), (cx + h["neck"] * 1.6, neck_y))
    c.poly(body, _TORSO, outer)
    if look.jacket is not None and b.s > 0:  # the open jacket shows the shirt down the middle
        w0, w1 = h["neck"] * 1.2, h["waist"] * 0.45
        c.poly(((cx - w0, neck_y), (cx + w0, neck_y), (cx + w1, b.y_hem), (cx - w1, b.y_hem)), _TORSO, _SHIRT)
    if look.pattern == "logo" and b.s > 0:
        _draw_logo(c, look, (cx + b.s * 0.03 * H * (look.logo_shape % 2), top + 0.1 * H), 0.035 * H)


def _draw_logo(c: _Canvas, look: _Look, centre, size: float) -> None:
    x, y = centre
    if look.logo_shape == 0:
        c.circle(centre, size * 0.8, _TORSO, _LOGO)
    elif look.logo_shape == 1:
        c.poly(((x - size, y - size * 0.6), (x + size, y - size * 0.6), (x + size, y + size * 0.6),
                (x - size, y + size * 0.6)), _TORSO, _LOGO)
    elif look.logo_shape == 2:
        c.poly(((x, y - size), (x + size, y + size * 0.7), (x - size, y + size * 0.7)), _TORSO, _LOGO)
    else:
        c.poly(((x - size * 1.6, y - size * 0.3), (x + size * 1.6, y - size * 0.3), (x + size * 1.6, y + size * 0.3),
                (x - size * 1.6, y + size * 0.3)), _TORSO, _LOGO)


def _draw_arms(c: _Canvas, look: _Look, b: _Body) -> None:
    r = b.radius
    sleeve = _SHIRT if look.jacket is None else _JACKET
    short = look.short_sleeves and look.jacket is None
    for side in (1, -1):
        arm = _ARM[side]
        sh, el, wr = b.shoulder[side], b.elbow[side], b.wrist[side]
        upper_mat, fore_mat = (_SKIN, _SKIN) if short else (sleeve, sleeve)
        c.capsule(sh, el, r["upper_arm"], r["elbow"], arm, upper_mat)
        c.capsule(el, wr, r["elbow"], r["wrist"], arm, fore_mat)
        if short:
            c.capsule(sh, _lerp(sh, el, 0.5), r["upper_arm"] * 1.25, r["elbow"] * 1.3, arm, sleeve)
        end = b.hand_end[side]
        length = math.hypot(end[0] - wr[0], end[1] - wr[1])
        angle = math.degrees(math.atan2(end[1] - wr[1], end[0] - wr[0]))
        c.ellipse(_lerp(wr, end, 0.5), (length * 0.55, r["wrist"] * 1.25), angle, arm, _SKIN)


def _draw_head(c: _Canvas, look: _Look, b: _Body) -> None:
    u = b.unit
    hx, hy = b.cx, b.top + 0.5 * u
    a = 0.36 * u
    c.capsule((hx, hy + 0.3 * u), (hx, b.y_shoulder), b.half["neck"], b.half["neck"] * 1.1, _HEAD, _SKIN)
    for side in (1, -1):
        c.ellipse((hx + side * a * 0.97, hy + 0.05 * u), (0.07 * u, 0.13 * u), 0, _HEAD, _SKIN)
    front = b.s > 0
    if front:
        c.ellipse((hx, hy - 0.05 * u), (a * 1.07, 0.52 * u), 0, _HEAD, _HAIR)
        c.ellipse((hx, hy + 0.09 * u), (a * 0.95, 0.42 * u), 0, _HEAD, _SKIN)
        eye_r = max(0.7, 0.05 * u)
        for side in (1, -1):
            c.circle((hx + side * 0.38 * a, hy + 0.03 * u), eye_r, _HEAD, _EYE)
            c.ellipse((hx + side * 0.38 * a, hy - 0.1 * u), (0.15 * a, max(0.5, 0.025 * u)), 0, _HEAD, _HAIR)
        c.ellipse((hx, hy + 0.3 * u), (0.2 * a, max(0.6, 0.04 * u)), 0, _HEAD, _LIP)
    else:
        c.ellipse((hx, hy), (a, 0.5 * u), 0, _HEAD, _SKIN)
        c.ellipse((hx, hy - 0.04 * u), (a * 1.07, 0.5 * u), 0, _HEAD, _HAIR)  # the back of the head
    if look.hat == "cap":
        c.ellipse((hx, hy - 0.18 * u), (a * 1.1, 0.4 * u), 0, _HEAD, _HAT, 180, 360)
        if front:
            c.ellipse((hx, hy - 0.18 * u), (a * 1.15, 0.07 * u), 0, _HEAD, _HAT)
    elif look.hat == "beanie":
        c.ellipse((hx, hy - 0.12 * u), (a * 1.1, 0.46 * u), 0, _HEAD, _HAT, 180, 360)
        c.poly(((hx - a * 1.1, hy - 0.16 * u), (hx + a * 1.1, hy - 0.16 * u), (hx + a * 1.1, hy - 0.05 * u),
                (hx - a * 1.1, hy - 0.05 * u)), _HEAD, _HAT)


def _draw_long_hair(c: _Canvas, b: _Body, length: float) -> None:
    u = b.unit
    hx, hy = b.cx, b.top + 0.5 * u
    a = 0.36 * u
    c.poly(((hx - a * 1.05, hy), (hx + a * 1.05, hy), (hx + a * 1.2, hy + length), (hx - a * 1.2, hy + length)),
           _HEAD, _HAIR)


def _draw_backpack(c: _Canvas, b: _Body) -> None:
    H, cx = b.height, b.cx
    w, top = b.half["chest"] * 0.8, b.y_shoulder + 0.025 * H
    c.poly(((cx - w, top + 0.02 * H), (cx - w * 0.8, top), (cx + w * 0.8, top), (cx + w, top + 0.02 * H),
            (cx + w * 1.05, top + 0.25 * H), (cx - w * 1.05, top + 0.25 * H)), _TORSO, _BAG)


def _draw_straps(c: _Canvas, b: _Body) -> None:
    H = b.height
    for side in (1, -1):
        x = b.cx + b.s * side * b.half["chest"] * 0.55
        c.capsule((x, b.y_shoulder), (x + b.s * side * 0.015 * H, b.y_shoulder + 0.14 * H), 0.012 * H, 0.012 * H,
                  _TORSO, _STRAP)


def _draw_shoulder_bag(c: _Canvas, look: _Look, b: _Body) -> None:
    H = b.height
    side = look.bag_side
    out = b.s * side
    bag_x = b.cx + out * (b.half["hip"] + 0.02 * H)
    strap_top = (b.cx - out * b.half["chest"] * 0.6, b.y_shoulder + 0.003 * H)
    c.capsule(strap_top, (bag_x, b.y_hip - 0.03 * H), 0.008 * H, 0.008 * H, _TORSO, _STRAP)
    w, h = 0.055 * H, 0.045 * H
    c.poly(((bag_x - w, b.y_hip - h), (bag_x + w, b.y_hip - h), (bag_x + w * 1.05, b.y_hip + h),
            (bag_x - w * 1.05, b.y_hip + h)), _TORSO, _BAG)


def _apply_pattern(c: _Canvas, look: _Look, b: _Body) -> None:
    """Turn the figure's shirt pixels into stripes or checks, anchored to the body so they move with it."""
    if look.pattern not in ("hstripes", "vstripes", "checks"):
        return
    y0, y1 = max(0, int(b.y_shoulder) - 2), min(c.pixels.shape[0], int(b.y_hem + 0.15 * b.height) + 2)
    if y1 <= y0:
        return
    block = c.pixels[y0:y1, :, 1]
    period = look.pattern_period * b.height / 220
    rows = ((np.arange(y0, y1, dtype=np.float32) - b.y_shoulder) % period < period * 0.5)[:, None]
    cols = ((np.arange(block.shape[1], dtype=np.float32) - b.cx) % period < period * 0.5)[None, :]
    stripes = {"hstripes": rows, "vstripes": cols, "checks": rows ^ cols}[look.pattern]
    block[(block == c.material_base + _SHIRT) & stripes] = c.material_base + _PATTERN


def _draw_figure(c: _Canvas, look: _Look, b: _Body) -> None:
    """Draw a whole person back to front; the order decides what covers what in each view."""
    front = b.s > 0
    long_hair = b.height * (0.28 if look.hair_style == "long" else 0.0)
    if front and long_hair:
        _draw_long_hair(c, b, long_hair)
    if front and look.bag == "backpack":
        _draw_backpack(c, b)
    _draw_legs(c, look, b)
    _draw_torso(c, look, b)
    if not front and look.bag == "backpack":
        _draw_backpack(c, b)
    if look.bag == "shoulder":
        _draw_shoulder_bag(c, look, b)
    _draw_arms(c, look, b)
    if front and look.bag == "backpack":
        _draw_straps(c, b)
    _draw_head(c, look, b)
    if not front and long_hair:  # over the neck and the back
        _draw_long_hair(c, b, long_hair * 0.8)
    _apply_pattern(c, look, b)


def _dress(palette: np.ndarray, base: int, look: _Look, rng: np.random.Generator) -> None:
    """Write the look's colours into palette slots ``base + material``, with per-image jitter."""
    colours = {
        _SKIN: look.skin, _HAIR: look.hair if look.hair_style != "buzz" else tuple(0.6 * v for v in look.skin),
        _EYE: (25, 20, 20), _LIP: tuple(0.75 * v for v in look.skin), _SHIRT: look.shirt,
        _PATTERN: look.pattern_colour, _LOGO: look.pattern_colour, _JACKET: look.jacket or look.shirt,
        _LOWER: look.lower, _LEGWEAR: look.legwear, _SHOE: look.shoes, _HAT: look.hat_colour,
        _BAG: look.bag_colour, _STRAP: tuple(0.6 * v for v in look.bag_colour),
    }
    slots = np.array([base + k for k in colours], np.intp)
    values = np.array(list(colours.values()), np.float32)
    jitter = np.exp(rng.normal(0, 0.07, (len(slots), 3))).astype(np.float32)
    palette[slots] = values * jitter


# ----------------------------------------------------------------------------- background


def _background(rng: np.random.Generator, cam: _Camera) -> np.ndarray:
    """A uint8 RGB scene in the camera's style: wall or sky, ground plane, structures, texture."""
    jitter = rng.uniform(0.85, 1.15, 3)
    wall, wall2, ground = (np.array(v) * jitter for v in (cam.wall, cam.wall2, cam.ground))
    horizon = int(_H * (cam.horizon + rng.uniform(-0.07, 0.07)))
    rows = np.arange(_H)[:, None]
    column = np.where(rows < horizon, wall2 + (wall - wall2) * (rows / horizon),
                      ground * (0.8 + 0.3 * (rows - horizon) / (_H - horizon)))
    img = cv2.resize(_to_uint8(column)[:, None, :], (_W, _H), interpolation=cv2.INTER_NEAREST)
    accent = tuple((np.array(cam.accent) * rng.uniform(0.8, 1.2, 3)).tolist())
    dark = tuple((wall * 0.45).tolist())
    if cam.style == "street":  # a facade with a grid of windows and a kerb
        w, h = rng.uniform(14, 26), rng.uniform(18, 32)
        ox, oy = rng.uniform(-w, 0), rng.uniform(-h, 0)
        for y in np.arange(oy, horizon - h * 0.6, h * 1.6):
            for x in np.arange(ox, _W, w * 1.6):
                cv2.rectangle(img, (int(x), int(y)), (int(x + w), int(y + h)), dark, -1)
        cv2.line(img, (0, horizon), (_W, horizon), tuple((ground * 0.6).tolist()), 3)
    elif cam.style == "park":  # tree crowns and a bench
        for _ in range(int(rng.integers(3, 7))):
            green = (rng.uniform(20, 70), rng.uniform(70, 140), rng.uniform(20, 60))
            cv2.ellipse(img, (int(rng.uniform(0, _W)), int(rng.uniform(0, horizon))),
                        (int(rng.uniform(15, 40)), int(rng.uniform(12, 35))), 0, 0, 360, green, -1)
        cv2.rectangle(img, (int(rng.uniform(-20, _W)), horizon - 30), (int(rng.uniform(0, _W)) + 6, horizon),
                      (70, 50, 35), -1)
    elif cam.style == "hall":  # panelled wall under a ceiling light
        for x in np.arange(rng.uniform(0, 30), _W, rng.uniform(20, 40)):
            cv2.line(img, (int(x), 0), (int(x), horizon), dark, 1)
        cv2.rectangle(img, (0, int(rng.uniform(0, 15))), (_W, int(rng.uniform(16, 24))), (235, 235, 225), -1)
    else:  # a plaza: shop signs and a lamp post
        for _ in range(int(rng.integers(2, 5))):
            x, y = rng.uniform(-20, _W), rng.uniform(0, horizon - 10)
            cv2.rectangle(img, (int(x), int(y)), (int(x + rng.uniform(15, 50)), int(y + rng.uniform(10, 40))),
                          tuple(rng.uniform(30, 230, 3).tolist()), -1)
        x = int(rng.uniform(0, _W))
        cv2.line(img, (x, 0), (x, horizon + 20), (60, 60, 65), int(rng.integers(2, 5)))
    joint = tuple((ground * 0.72).tolist())
    for k in range(int(rng.integers(3, 7))):  # paving joints, across and towards a vanishing point
        y = horizon + (_H - horizon) * (k + rng.uniform(0.2, 0.8)) / 6
        cv2.line(img, (0, int(y)), (_W, int(y + rng.uniform(-4, 4))), joint, 1)
    vx = int(rng.uniform(-_W, 2 * _W))
    for x in np.linspace(-_W, 2 * _W, int(rng.integers(3, 8))):
        cv2.line(img, (vx, horizon), (int(x), _H), joint, 1)
    for _ in range(int(rng.integers(0, 3))):  # clutter: signs, posters, doors
        x, y = rng.uniform(-10, _W), rng.uniform(0, _H - 20)
        cv2.rectangle(img, (int(x), int(y)), (int(x + rng.uniform(6, 30)), int(y + rng.uniform(6, 40))), accent, -1)
    return _add_noise(img, _window(_tiles().smooth3, rng), 100 / 127 * cam.texture)


# ----------------------------------------------------------------------------- occluders


def _occlude(rng: np.random.Generator, pixels: np.ndarray, palette: np.ndarray, seed: int, num_ids: int,
             pid: int, body: _Body) -> None:
    """Cover a sampled share of the target's part pixels with an object or another person."""
    target = _LABEL_LUT[pixels[:, :, 0]] > 0
    total = int(target.sum())
    if total == 0:
        return
    coverage = rng.uniform(*_COVERAGE)
    kind = rng.choice(("bottom", "side", "top", "person"), p=(0.45, 0.15, 0.1, 0.3))
    palette[[_MAIN, _ALT, _DARK, _LIGHT]] = (rng.uniform(30, 230, 3), rng.uniform(30, 230, 3),
                                             rng.uniform(15, 50, 3), rng.uniform(190, 250, 3))
    palette[_GLASS] = rng.uniform(45, 90) * np.array((0.9, 1.0, 1.15))
    palette[_LEAF] = rng.uniform((20, 70, 20), (60, 130, 50))
    palette[_LEAF2] = rng.uniform((40, 100, 30), (90, 170, 70))
    c = _Canvas(pixels)
    if kind == "person":
        _occluding_person(rng, pixels, palette, seed, num_ids, pid, body, target, coverage)
    elif kind == "side":
        side = int(rng.choice((-1, 1)))
        cols = target.sum(0)
        cum = np.cumsum(cols if side < 0 else cols[::-1])
        k = int(np.searchsorted(cum, coverage * total))
        edge = k if side < 0 else _W - 1 - k
        _draw_side_object(rng, c, palette, edge, side)
    else:
        rows = target.sum(1)
        cum = np.cumsum(rows[::-1] if kind == "bottom" else rows)
        k = int(np.searchsorted(cum, coverage * total))
        if kind == "bottom":
            _draw_bottom_object(rng, c, palette, _H - 1 - k, target)
        else:
            _draw_top_object(rng, c, k)


def _draw_bottom_object(rng: np.random.Generator, c: _Canvas, palette: np.ndarray, top: float,
                        target: np.ndarray) -> None:
    """A car, box or bush whose upper edge is at ``top`` and which spans the figure's width."""
    xs = np.flatnonzero(target[int(top):].any(0))
    x0, x1 = (float(xs[0]), float(xs[-1])) if len(xs) else (0.0, float(_W))
    kind = rng.choice(("car", "box", "bush"))
    if kind == "car":  # seen from the side: body, windows if it reaches high enough, door seam, wheels
        palette[_MAIN] = _CARS[rng.integers(len(_CARS))] * rng.uniform(0.9, 1.1, 3)
        left, right = -rng.uniform(10, 60), _W + rng.uniform(10, 60)
        glass = min(0.45 * (_H - top), 55.0) if _H - top > 60 else 0.0
        c.poly(((left, top + 12), (left + 25, top), (right - 25, top), (right, top + 12), (right, _H), (left, _H)),
               _OBJECT, _MAIN)
        if glass:
            c.poly(((left + 8, top + glass), (left + 28, top + 4), (right - 28, top + 4), (right - 8, top + glass)),
                   _OBJECT + 1, _GLASS)
        seam = rng.uniform(20, _W - 20)
        c.poly(((seam, top + 4), (seam + 2, top + 4), (seam + 2, _H), (seam, _H)), _OBJECT + 2, _DARK)
        handle_y = top + glass + 10
        c.poly(((seam + 6, handle_y), (seam + 16, handle_y), (seam + 16, handle_y + 3), (seam + 6, handle_y + 3)),
               _OBJECT + 3, _DARK)
        for x in (rng.uniform(-20, 30), rng.uniform(_W - 30, _W + 20)):
            c.circle((x, _H + 8), rng.uniform(18, 26), _OBJECT + 4, _DARK)
    elif kind == "box":
        margin = rng.uniform(4, 15)
        left, right = x0 - margin, x1 + margin
        c.poly(((left, top), (right, top), (right, _H), (left, _H)), _OBJECT, _MAIN)
        mid = (left + right) / 2 + rng.uniform(-5, 5)
        c.poly(((mid - 3, top), (mid + 3, top), (mid + 3, _H), (mid - 3, _H)), _OBJECT + 1, _ALT)
        c.poly(((left, top), (right, top), (right - 4, top + 5), (left + 4, top + 5)), _OBJECT + 2, _LIGHT)
    else:
        left, right = x0 - rng.uniform(8, 20), x1 + rng.uniform(8, 20)
        c.poly(((left, top + 10), (right, top + 10), (right, _H), (left, _H)), _OBJECT, _LEAF)
        for x in np.linspace(left, right, int(rng.integers(4, 8))):
            c.ellipse((x + rng.uniform(-5, 5), top + rng.uniform(2, 14)), (rng.uniform(9, 18), rng.uniform(8, 14)), 0,
                      _OBJECT, _LEAF if rng.random() < 0.5 else _LEAF2)


def _draw_side_object(rng: np.random.Generator, c: _Canvas, palette: np.ndarray, edge: float, side: int) -> None:
    """A pillar or a tree trunk from the image's ``side`` edge (-1 left, +1 right) to column ``edge``."""
    far = -5.0 if side < 0 else _W + 5.0
    wobble = rng.uniform(-4, 4)
    kind = rng.choice(("poster", "bands", "trunk"))
    if kind == "trunk":
        palette[_MAIN] = rng.uniform((70, 50, 30), (120, 90, 60))
    c.poly(((edge + wobble, -1), (far, -1), (far, _H + 1), (edge - wobble, _H + 1)), _OBJECT, _MAIN)
    if kind == "poster":
        y = rng.uniform(20, 160)
        inner = edge - side * rng.uniform(4, 10)
        c.poly(((inner, y), (far, y), (far, y + rng.uniform(20, 60)), (inner, y + 40)), _OBJECT + 1, _ALT)
    elif kind == "bands":
        for y in np.arange(rng.uniform(0, 30), _H, rng.uniform(20, 45)):
            c.poly(((edge, y), (far, y), (far, y + 2), (edge, y + 2)), _OBJECT + 1, _DARK)
    else:  # furrows of bark
        for x in np.arange(edge, far, side * rng.uniform(5, 9))[1:]:
            lean = rng.uniform(-3, 3)
            c.poly(((x, -1), (x + 1.5, -1), (x + 1.5 + lean, _H + 1), (x + lean, _H + 1)), _OBJECT + 1, _DARK)


def _draw_top_object(rng: np.random.Generator, c: _Canvas, bottom: float) -> None:
    """An awning, sign or foliage hanging from the top of the crop down to ``bottom``."""
    if rng.random() < 0.5:
        c.poly(((-5, -1), (_W + 5, -1), (_W + 5, bottom), (-5, bottom)), _OBJECT, _MAIN)
        for x in np.arange(rng.uniform(-10, 0), _W, 16):
            c.poly(((x, -1), (x + 8, -1), (x + 8, bottom), (x, bottom)), _OBJECT + 1, _ALT)
    else:
        c.poly(((-5, -1), (_W + 5, -1), (_W + 5, bottom - 10), (-5, bottom - 10)), _OBJECT, _LEAF)
        for x in np.linspace(-5, _W + 5, int(rng.integers(4, 8))):
            c.ellipse((x, bottom - rng.uniform(4, 14)), (rng.uniform(10, 18), rng.uniform(8, 14)), 0, _OBJECT,
                      _LEAF2)


def _occluding_person(rng: np.random.Generator, pixels: np.ndarray, palette: np.ndarray, seed: int, num_ids: int,
                      pid: int, body: _Body, target: np.ndarray, coverage: float) -> None:
    """Another identity nearer the camera, shifted sideways to hide about ``coverage`` of the target.

    The person is drawn once on a canvas three crops wide; the overlap of every horizontal shift is
    measured on 4x-downsampled masks and the shift closest to the wanted coverage is pasted."""
    other = int(rng.integers(1, num_ids))
    other += other >= pid  # any identity but the target's
    look = _identity(seed, other)
    _dress(palette, _OTHER_MATERIALS, look, rng)
    height = body.height * rng.uniform(1.0, 1.25)
    wide = np.zeros((_H, 3 * _W, 2), np.uint8)
    person = _pose(rng, look, bool(rng.random() < 0.5), height, 1.5 * _W, _H + rng.uniform(-0.05, 0.3) * body.height)
    _draw_figure(_Canvas(wide, _OTHER_PERSON, _OTHER_MATERIALS), look, person)
    small = (_H // 4, _W // 4)
    mine = cv2.resize(target.astype(np.float32), small[::-1], interpolation=cv2.INTER_AREA)
    theirs = cv2.resize((wide[:, :, 0] > 0).astype(np.float32), (3 * small[1], small[0]), interpolation=cv2.INTER_AREA)
    overlap = np.einsum("yjx,yx->j", sliding_window_view(theirs, small[1], axis=1), mine) / max(mine.sum(), 1e-6)
    offset = 4 * int(np.argmin(np.abs(overlap - coverage)))
    window = wide[:, offset:offset + _W]
    drawn = window[:, :, 0] > 0
    pixels[drawn] = window[drawn]


# ----------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class SyntheticItem:
    """One image of the synthetic dataset (see `plan`)."""

    relpath: str  # e.g. "bounding_box_train/0007_c3_f0000123.jpg"
    split: str  # "train" | "query" | "gallery"
    pid: int  # identity as written in the file name (train and test identities are disjoint)
    camid: int  # 1-based, as in the file name
    occluded: bool
    seed: int  # this image's random seed, from the global seed and the item's index


def _check(num_ids: int, seed: int) -> None:
    if isinstance(num_ids, bool) or not isinstance(num_ids, (int, np.integer)) or num_ids < MIN_IDS:
        raise DropError(f"the synthetic dataset needs at least {MIN_IDS} identities, got {num_ids!r}.",
                        hint="Half of them train, half test; pass a larger number of ids.")
    if num_ids > 9999:
        raise DropError(f"the synthetic dataset holds at most 9999 identities (4-digit names), got {num_ids}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DropError(f"the synthetic seed must be a non-negative integer, got {seed!r}.")


def _item_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, 3, index]).generate_state(1, np.uint64)[0] >> 1)


def _subset(rng: np.random.Generator, count: int, share: float) -> set[int]:
    """Exactly round(share * count) of the indices 0..count-1, so the occluded shares are exact."""
    return set(rng.choice(count, round(share * count), replace=False).tolist())


def plan(num_ids: int, seed: int) -> list[SyntheticItem]:
    """Every image of the dataset, in a stable order (train, query, gallery).

    Identities 1..T train and T+1..num_ids test (T = num_ids // 2). Each identity is seen by 3-5 of
    the cameras. About a tenth of the test identities appear in the gallery only (distractors); the
    others have 2-3 occluded query images, and their gallery always holds an image from a camera
    that none of their queries uses. 20% of train and 10% of gallery images are occluded."""
    _check(num_ids, seed)
    rng = np.random.default_rng([seed, 0])
    num_train = num_ids // 2
    test_ids = list(range(num_train + 1, num_ids + 1))
    gallery_only = set(rng.choice(test_ids, size=max(1, round(_GALLERY_ONLY_SHARE * len(test_ids))),
                                  replace=False).tolist())
    rows: dict[str, list[tuple[int, int]]] = {"train": [], "query": [], "gallery": []}
    for pid in range(1, num_ids + 1):
        cams = (rng.permutation(CAMERAS)[:rng.integers(_IDENTITY_CAMERAS[0], _IDENTITY_CAMERAS[1] + 1)] + 1).tolist()
        if pid <= num_train:
            count = int(rng.integers(_TRAIN_IMAGES[0], _TRAIN_IMAGES[1] + 1))
            rows["train"] += [(pid, int(rng.choice(cams))) for _ in range(count)]
            continue
        if pid not in gallery_only:
            count = _QUERY_IMAGES + int(rng.random() < _THIRD_QUERY)
            rows["query"] += [(pid, int(rng.choice(cams[:-1]))) for _ in range(count)]
        count = int(rng.integers(_GALLERY_IMAGES[0], _GALLERY_IMAGES[1] + 1))
        rows["gallery"] += [(pid, cams[-1])] + [(pid, int(rng.choice(cams))) for _ in range(count - 1)]
    occluded = {
        "train": _subset(rng, len(rows["train"]), _TRAIN_OCCLUDED),
        "query": set(range(len(rows["query"]))),
        "gallery": _subset(rng, len(rows["gallery"]), _GALLERY_OCCLUDED),
    }
    items = []
    for split, entries in rows.items():
        for i, (pid, camid) in enumerate(entries):
            index = len(items)
            relpath = f"{SPLIT_FOLDERS[split]}/{pid:04d}_c{camid}_f{index:07d}.jpg"
            items.append(SyntheticItem(relpath, split, pid, camid, i in occluded[split], _item_seed(seed, index)))
    return items


# ----------------------------------------------------------------------------- render


def _compose(rng: np.random.Generator, pixels: np.ndarray, palette: np.ndarray, image: np.ndarray,
             cam: _Camera) -> np.ndarray:
    """Paint the canvas over the background ``image`` (in place): materials coloured, shaded towards
    every region edge, textured and lit from above; then the camera's optics, tone and sensor noise."""
    region, material = pixels[:, :, 0], pixels[:, :, 1]
    inner = cv2.compare(cv2.dilate(region, _KERNEL3), cv2.erode(region, _KERNEL3), cv2.CMP_EQ)
    depth = cv2.distanceTransform(inner, cv2.DIST_L1, 3, dstType=cv2.CV_8U)
    factor = cv2.LUT(depth, _SHADE) * (1.0 + cv2.LUT(material, _TEXTURE) * _window(_tiles().smooth, rng))
    factor = cv2.convertScaleAbs(factor * _LIGHT_FALLOFF, alpha=128)
    colours = np.clip(palette, 0, 255).astype(np.uint8)[None]
    colour = cv2.multiply(cv2.LUT(cv2.merge((material, material, material)), colours),
                          cv2.merge((factor, factor, factor)), scale=1 / 128)
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
    body = _pose(rng, look, bool(rng.random() < cam.front), height, _W / 2 + rng.uniform(-9, 9),
                 _H - rng.uniform(2, 0.97 * _H - height))
    pixels = np.zeros((_H, _W, 2), np.uint8)
    _draw_figure(_Canvas(pixels), look, body)
    if item.occluded:
        _occlude(np.random.default_rng([item.seed, 1]), pixels, palette, seed, num_ids, item.pid, body)
    image = _compose(rng, pixels, palette, background, cam)
    return image, _LABEL_LUT[pixels[:, :, 0]]

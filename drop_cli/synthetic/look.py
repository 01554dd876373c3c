"""Identities and cameras: what makes a person recognisable (``_Look``) and what a camera does to a scene
(``_Camera``), both derived from the global seed alone."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from .plan import CAMERAS

# Palettes (RGB). Weights favour the dark and neutral clothes that dominate street scenes.
_CLOTHES = np.array(
    [
        (22, 22, 26),
        (50, 50, 56),
        (105, 105, 110),
        (165, 165, 168),
        (228, 226, 220),
        (28, 36, 72),
        (45, 78, 150),
        (120, 160, 205),
        (150, 28, 32),
        (95, 25, 35),
        (220, 130, 160),
        (220, 115, 40),
        (215, 190, 55),
        (38, 110, 58),
        (90, 95, 48),
        (185, 165, 125),
        (95, 62, 40),
        (90, 55, 125),
        (30, 115, 120),
    ],
    np.float32,
)
_CLOTHES_W = np.array([14, 9, 7, 5, 9, 7, 6, 4, 5, 3, 3, 2, 2, 3, 3, 4, 4, 2, 2], np.float64)
_TROUSERS = np.array(
    [
        (22, 22, 26),
        (50, 50, 56),
        (55, 75, 115),
        (28, 36, 72),
        (110, 135, 175),
        (110, 110, 115),
        (180, 160, 120),
        (90, 60, 40),
        (88, 92, 48),
        (225, 222, 215),
    ],
    np.float32,
)
_TROUSERS_W = np.array([18, 8, 14, 7, 5, 5, 5, 3, 3, 2], np.float64)
_SHOES = np.array(
    [(20, 20, 22), (235, 235, 232), (90, 58, 35), (110, 110, 115), (160, 30, 35), (40, 60, 120)], np.float32
)
_SHOES_W = np.array([10, 7, 4, 3, 1, 1], np.float64)
_SKINS = np.array(
    [(242, 205, 180), (225, 180, 150), (200, 150, 115), (170, 120, 85), (130, 88, 60), (95, 65, 45)], np.float32
)
_HAIRS = np.array(
    [(18, 15, 14), (50, 35, 25), (95, 65, 40), (190, 160, 105), (150, 150, 150), (120, 55, 30)], np.float32
)
_HAIRS_W = np.array([10, 8, 4, 2, 1, 1], np.float64)
_CARS = np.array(
    [(230, 230, 232), (160, 165, 170), (30, 32, 36), (140, 25, 30), (35, 60, 120), (70, 80, 70)], np.float32
)

_PATTERNS = ("solid", "hstripes", "vstripes", "checks", "logo")
_PATTERNS_W = np.array([45, 15, 10, 10, 20], np.float64)
_LOWER_KINDS = ("trousers", "shorts", "skirt")
_LOWER_W = np.array([75, 13, 12], np.float64)


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
        out.append(
            _Camera(
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
            )
        )
    return tuple(out)

"""Figures: a walking or standing pose (``_Body``) and the drawing of a person, garments and accessories
included, into the canvas."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .canvas import (
    _ARM,
    _BAG,
    _EYE,
    _FOOT,
    _HAIR,
    _HAT,
    _HEAD,
    _JACKET,
    _LEG,
    _LEGWEAR,
    _LIP,
    _LOGO,
    _LOWER,
    _PATTERN,
    _SHIRT,
    _SHOE,
    _SKIN,
    _STRAP,
    _TORSO,
    _Canvas,
    _lerp,
    _step,
)
from .look import _Look


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
    radius = {
        "upper_arm": 0.024 * H * t,
        "elbow": 0.019 * H * t,
        "wrist": 0.014 * H * t,
        "thigh": 0.046 * H * t,
        "knee": 0.03 * H * t,
        "ankle": 0.019 * H * t,
    }
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
        s=s,
        height=H,
        unit=unit,
        cx=cx,
        top=dy,
        y_shoulder=y_shoulder + dy,
        y_waist=0.39 * H + dy,
        y_hip=y_hip + dy,
        y_hem=H * (0.5 if look.jacket is None else 0.53) + dy,
        shoulder=moved[0],
        elbow=moved[1],
        wrist=moved[2],
        hand_end=moved[3],
        hip=moved[4],
        knee=moved[5],
        ankle=moved[6],
        half=half,
        radius=radius,
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
        c.ellipse(
            (ankle[0] + b.s * side * 0.006 * H, ankle[1] + 0.026 * H), (0.027 * H, 0.024 * H), 0, _FOOT[side], _SHOE
        )


def _draw_torso(c: _Canvas, look: _Look, b: _Body) -> None:
    h, H, cx = b.half, b.height, b.cx
    neck_y = b.y_shoulder - 0.012 * H
    # Pelvis (waist to crotch, in the lower garment) is torso; the shirt hem covers its top.
    crotch = b.y_hip + 0.05 * H
    c.poly(
        (
            (cx - h["waist"], b.y_waist),
            (cx + h["waist"], b.y_waist),
            (cx + h["hip"], b.y_hip),
            (cx + 0.02 * H, crotch),
            (cx - 0.02 * H, crotch),
            (cx - h["hip"], b.y_hip),
        ),
        _TORSO,
        _LOWER,
    )
    if look.lower_kind == "skirt":
        hem = b.y_hip + look.skirt * H
        for side in (1, -1):
            x = b.s * side
            c.poly(
                (
                    (cx, b.y_waist),
                    (cx + x * h["waist"], b.y_waist),
                    (cx + x * h["hip"] * 1.05, b.y_hip),
                    (cx + x * h["hip"] * 1.3, hem),
                    (cx, hem),
                ),
                _LEG[side],
                _LOWER,
            )
    outer = _SHIRT if look.jacket is None else _JACKET
    sh, ch = h["shoulder"], h["chest"]
    top = b.y_shoulder
    body = (
        (cx - h["neck"] * 1.6, neck_y),
        (cx - sh * 0.9, top + 0.004 * H),
        (cx - sh, top + 0.035 * H),
        (cx - ch, top + 0.09 * H),
        (cx - h["waist"] * 1.04, b.y_waist),
        (cx - h["hip"] * 1.06, b.y_hem),
        (cx + h["hip"] * 1.06, b.y_hem),
        (cx + h["waist"] * 1.04, b.y_waist),
        (cx + ch, top + 0.09 * H),
        (cx + sh, top + 0.035 * H),
        (cx + sh * 0.9, top + 0.004 * H),
        (cx + h["neck"] * 1.6, neck_y),
    )
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
        c.poly(
            (
                (x - size, y - size * 0.6),
                (x + size, y - size * 0.6),
                (x + size, y + size * 0.6),
                (x - size, y + size * 0.6),
            ),
            _TORSO,
            _LOGO,
        )
    elif look.logo_shape == 2:
        c.poly(((x, y - size), (x + size, y + size * 0.7), (x - size, y + size * 0.7)), _TORSO, _LOGO)
    else:
        c.poly(
            (
                (x - size * 1.6, y - size * 0.3),
                (x + size * 1.6, y - size * 0.3),
                (x + size * 1.6, y + size * 0.3),
                (x - size * 1.6, y + size * 0.3),
            ),
            _TORSO,
            _LOGO,
        )


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
        c.poly(
            (
                (hx - a * 1.1, hy - 0.16 * u),
                (hx + a * 1.1, hy - 0.16 * u),
                (hx + a * 1.1, hy - 0.05 * u),
                (hx - a * 1.1, hy - 0.05 * u),
            ),
            _HEAD,
            _HAT,
        )


def _draw_long_hair(c: _Canvas, b: _Body, length: float) -> None:
    u = b.unit
    hx, hy = b.cx, b.top + 0.5 * u
    a = 0.36 * u
    c.poly(
        ((hx - a * 1.05, hy), (hx + a * 1.05, hy), (hx + a * 1.2, hy + length), (hx - a * 1.2, hy + length)),
        _HEAD,
        _HAIR,
    )


def _draw_backpack(c: _Canvas, b: _Body) -> None:
    H, cx = b.height, b.cx
    w, top = b.half["chest"] * 0.8, b.y_shoulder + 0.025 * H
    c.poly(
        (
            (cx - w, top + 0.02 * H),
            (cx - w * 0.8, top),
            (cx + w * 0.8, top),
            (cx + w, top + 0.02 * H),
            (cx + w * 1.05, top + 0.25 * H),
            (cx - w * 1.05, top + 0.25 * H),
        ),
        _TORSO,
        _BAG,
    )


def _draw_straps(c: _Canvas, b: _Body) -> None:
    H = b.height
    for side in (1, -1):
        x = b.cx + b.s * side * b.half["chest"] * 0.55
        c.capsule(
            (x, b.y_shoulder),
            (x + b.s * side * 0.015 * H, b.y_shoulder + 0.14 * H),
            0.012 * H,
            0.012 * H,
            _TORSO,
            _STRAP,
        )


def _draw_shoulder_bag(c: _Canvas, look: _Look, b: _Body) -> None:
    H = b.height
    side = look.bag_side
    out = b.s * side
    bag_x = b.cx + out * (b.half["hip"] + 0.02 * H)
    strap_top = (b.cx - out * b.half["chest"] * 0.6, b.y_shoulder + 0.003 * H)
    c.capsule(strap_top, (bag_x, b.y_hip - 0.03 * H), 0.008 * H, 0.008 * H, _TORSO, _STRAP)
    w, h = 0.055 * H, 0.045 * H
    c.poly(
        (
            (bag_x - w, b.y_hip - h),
            (bag_x + w, b.y_hip - h),
            (bag_x + w * 1.05, b.y_hip + h),
            (bag_x - w * 1.05, b.y_hip + h),
        ),
        _TORSO,
        _BAG,
    )


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
        _SKIN: look.skin,
        _HAIR: look.hair if look.hair_style != "buzz" else tuple(0.6 * v for v in look.skin),
        _EYE: (25, 20, 20),
        _LIP: tuple(0.75 * v for v in look.skin),
        _SHIRT: look.shirt,
        _PATTERN: look.pattern_colour,
        _LOGO: look.pattern_colour,
        _JACKET: look.jacket or look.shirt,
        _LOWER: look.lower,
        _LEGWEAR: look.legwear,
        _SHOE: look.shoes,
        _HAT: look.hat_colour,
        _BAG: look.bag_colour,
        _STRAP: tuple(0.6 * v for v in look.bag_colour),
    }
    slots = np.array([base + k for k in colours], np.intp)
    values = np.array(list(colours.values()), np.float32)
    jitter = np.exp(rng.normal(0, 0.07, (len(slots), 3))).astype(np.float32)
    palette[slots] = values * jitter

"""Scenes: the camera's background, and the occluders (objects and other people) placed to hide a sampled
share of the target's part pixels."""

from __future__ import annotations

import cv2
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .canvas import (
    _ALT,
    _DARK,
    _GLASS,
    _H,
    _LABEL_LUT,
    _LEAF,
    _LEAF2,
    _LIGHT,
    _MAIN,
    _OBJECT,
    _OTHER_MATERIALS,
    _OTHER_PERSON,
    _W,
    _add_noise,
    _Canvas,
    _tiles,
    _to_uint8,
    _window,
)
from .figure import _Body, _draw_figure, _dress, _pose
from .look import _CARS, _Camera, _identity
from .plan import _COVERAGE


def _background(rng: np.random.Generator, cam: _Camera) -> np.ndarray:
    """A uint8 RGB scene in the camera's style: wall or sky, ground plane, structures, texture."""
    jitter = rng.uniform(0.85, 1.15, 3)
    wall, wall2, ground = (np.array(v) * jitter for v in (cam.wall, cam.wall2, cam.ground))
    horizon = int(_H * (cam.horizon + rng.uniform(-0.07, 0.07)))
    rows = np.arange(_H)[:, None]
    column = np.where(
        rows < horizon,
        wall2 + (wall - wall2) * (rows / horizon),
        ground * (0.8 + 0.3 * (rows - horizon) / (_H - horizon)),
    )
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
            cv2.ellipse(
                img,
                (int(rng.uniform(0, _W)), int(rng.uniform(0, horizon))),
                (int(rng.uniform(15, 40)), int(rng.uniform(12, 35))),
                0,
                0,
                360,
                green,
                -1,
            )
        cv2.rectangle(
            img, (int(rng.uniform(-20, _W)), horizon - 30), (int(rng.uniform(0, _W)) + 6, horizon), (70, 50, 35), -1
        )
    elif cam.style == "hall":  # panelled wall under a ceiling light
        for x in np.arange(rng.uniform(0, 30), _W, rng.uniform(20, 40)):
            cv2.line(img, (int(x), 0), (int(x), horizon), dark, 1)
        cv2.rectangle(img, (0, int(rng.uniform(0, 15))), (_W, int(rng.uniform(16, 24))), (235, 235, 225), -1)
    else:  # a plaza: shop signs and a lamp post
        for _ in range(int(rng.integers(2, 5))):
            x, y = rng.uniform(-20, _W), rng.uniform(0, horizon - 10)
            cv2.rectangle(
                img,
                (int(x), int(y)),
                (int(x + rng.uniform(15, 50)), int(y + rng.uniform(10, 40))),
                tuple(rng.uniform(30, 230, 3).tolist()),
                -1,
            )
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


def _occlude(
    rng: np.random.Generator, pixels: np.ndarray, palette: np.ndarray, seed: int, num_ids: int, pid: int, body: _Body
) -> None:
    """Cover a sampled share of the target's part pixels with an object or another person."""
    target = _LABEL_LUT[pixels[:, :, 0]] > 0
    total = int(target.sum())
    if total == 0:
        return
    coverage = rng.uniform(*_COVERAGE)
    kind = rng.choice(("bottom", "side", "top", "person"), p=(0.45, 0.15, 0.1, 0.3))
    palette[[_MAIN, _ALT, _DARK, _LIGHT]] = (
        rng.uniform(30, 230, 3),
        rng.uniform(30, 230, 3),
        rng.uniform(15, 50, 3),
        rng.uniform(190, 250, 3),
    )
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


def _draw_bottom_object(
    rng: np.random.Generator, c: _Canvas, palette: np.ndarray, top: float, target: np.ndarray
) -> None:
    """A car, box or bush whose upper edge is at ``top`` and which spans the figure's width."""
    xs = np.flatnonzero(target[int(top) :].any(0))
    x0, x1 = (float(xs[0]), float(xs[-1])) if len(xs) else (0.0, float(_W))
    kind = rng.choice(("car", "box", "bush"))
    if kind == "car":  # seen from the side: body, windows if it reaches high enough, door seam, wheels
        palette[_MAIN] = _CARS[rng.integers(len(_CARS))] * rng.uniform(0.9, 1.1, 3)
        left, right = -rng.uniform(10, 60), _W + rng.uniform(10, 60)
        glass = min(0.45 * (_H - top), 55.0) if _H - top > 60 else 0.0
        c.poly(
            ((left, top + 12), (left + 25, top), (right - 25, top), (right, top + 12), (right, _H), (left, _H)),
            _OBJECT,
            _MAIN,
        )
        if glass:
            c.poly(
                ((left + 8, top + glass), (left + 28, top + 4), (right - 28, top + 4), (right - 8, top + glass)),
                _OBJECT + 1,
                _GLASS,
            )
        seam = rng.uniform(20, _W - 20)
        c.poly(((seam, top + 4), (seam + 2, top + 4), (seam + 2, _H), (seam, _H)), _OBJECT + 2, _DARK)
        handle_y = top + glass + 10
        c.poly(
            ((seam + 6, handle_y), (seam + 16, handle_y), (seam + 16, handle_y + 3), (seam + 6, handle_y + 3)),
            _OBJECT + 3,
            _DARK,
        )
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
            c.ellipse(
                (x + rng.uniform(-5, 5), top + rng.uniform(2, 14)),
                (rng.uniform(9, 18), rng.uniform(8, 14)),
                0,
                _OBJECT,
                _LEAF if rng.random() < 0.5 else _LEAF2,
            )


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
            c.ellipse((x, bottom - rng.uniform(4, 14)), (rng.uniform(10, 18), rng.uniform(8, 14)), 0, _OBJECT, _LEAF2)


def _occluding_person(
    rng: np.random.Generator,
    pixels: np.ndarray,
    palette: np.ndarray,
    seed: int,
    num_ids: int,
    pid: int,
    body: _Body,
    target: np.ndarray,
    coverage: float,
) -> None:
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
    window = wide[:, offset : offset + _W]
    drawn = window[:, :, 0] > 0
    pixels[drawn] = window[drawn]

"""A generated video for the tracker tests: two people walk towards each other, both pass behind a
pillar at the same time and turn back there, so that each comes out on the side it came from.

A constant-velocity motion model expects each to come out on the other side, where the other one
appears: motion alone swaps the two identities, and only appearance keeps them. The people are
synthetic test identities (`drop_cli.synthetic.render`, pasted by their part masks onto a street);
the detections are their boxes while less than a third of them is behind the pillar.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from drop_cli.synthetic import plan, render

HEIGHT, WIDTH = 200, 480
PERSON_H, PERSON_W = 128, 64
PILLAR = (200, 280)  # x range, full height, in front of the people
TOP = 50  # the people's top edge
SPEED = 5  # px per frame
TURN = 4  # frames spent behind the pillar (turning back there)


@dataclass
class Sequence:
    frames: list[np.ndarray]  # BGR uint8 [HEIGHT, WIDTH, 3]
    detections: list[np.ndarray]  # per frame [n, 6]: x1, y1, x2, y2, conf, cls
    who: list[list[str]]  # per frame, the person ("a" or "b") of each detection
    hidden: tuple[int, int]  # first and last frame in which neither is detected


def _person(num_ids: int, pid: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    item = next(i for i in plan(num_ids, seed) if i.pid == pid and not i.occluded)
    rgb, parts = render(item, num_ids, seed)
    bgr = cv2.resize(np.ascontiguousarray(rgb[:, :, ::-1]), (PERSON_W, PERSON_H), interpolation=cv2.INTER_AREA)
    mask = cv2.resize((parts > 0).astype(np.uint8), (PERSON_W, PERSON_H), interpolation=cv2.INTER_NEAREST) > 0
    return bgr, mask


def _street() -> np.ndarray:
    rng = np.random.default_rng(7)
    street = np.empty((HEIGHT, WIDTH, 3), np.uint8)
    street[:] = (150, 160, 165)
    street[TOP + PERSON_H - 10 :] = (95, 100, 105)
    return np.clip(street.astype(np.int16) + rng.integers(-6, 7, street.shape), 0, 255).astype(np.uint8)


def _positions() -> dict[str, list[float]]:
    """Left edge x of each person per frame: towards the pillar, a pause behind it, and back."""
    a_in = list(np.arange(10, PILLAR[0] + 8, SPEED, dtype=float))  # until wholly behind the pillar
    b_in = [WIDTH - PERSON_W - 10 - (x - 10) for x in a_in]
    a = a_in + [a_in[-1]] * TURN + a_in[::-1]
    b = b_in + [b_in[-1]] * TURN + b_in[::-1]
    return {"a": a, "b": b}


def make_sequence(num_ids: int = 12, seed: int = 3, pids: tuple[int, int] = (8, 11)) -> Sequence:
    """The sequence with the synthetic test identities ``pids`` of the ``num_ids``/``seed`` set."""
    people = {"a": _person(num_ids, pids[0], seed), "b": _person(num_ids, pids[1], seed)}
    street, positions = _street(), _positions()
    frames, detections, who, empty = [], [], [], []
    for t in range(len(positions["a"])):
        frame = street.copy()
        boxes, names = [], []
        for name, (bgr, mask) in people.items():
            x = round(positions[name][t])
            region = frame[TOP : TOP + PERSON_H, x : x + PERSON_W]
            region[mask] = bgr[mask]
            behind = max(0, min(x + PERSON_W, PILLAR[1]) - max(x, PILLAR[0])) / PERSON_W
            if behind < 1 / 3:
                boxes.append([x, TOP, x + PERSON_W, TOP + PERSON_H, 0.9, 0])
                names.append(name)
        frame[:, PILLAR[0] : PILLAR[1]] = (60, 70, 120)  # the pillar, in front
        frames.append(frame)
        detections.append(np.array(boxes, np.float32).reshape(-1, 6))
        who.append(names)
        if not names:
            empty.append(t)
    return Sequence(frames, detections, who, (min(empty), max(empty)))

"""The `pose` labeler: body-part maps from BlazePose's landmark network, run directly on the crop.

What it does, per crop:

1. Input. The crop is padded to a square 1.25x its longer side (centred, black border; MediaPipe's
   own person detector also enlarges its box by 1.25 before this network) and mapped to 256x256
   RGB float32 in [0, 1] by one bilinear affine warp, as MediaPipe's ImageToTensorCalculator does.
   No person detector runs: a ReID crop is already centred on its person.
2. Network (LiteRT, ``num_threads`` threads, one interpreter per labeler). Outputs are looked up by
   name: ``Identity`` (1, 195) holds 39 landmarks x (x, y in 256-px input coordinates, z, visibility
   logit, presence logit), the first 33 being BlazePose's body landmarks; ``Identity_1`` (1, 1) the
   person presence; ``Identity_2`` (1, 256, 256, 1) person-segmentation logits. ``Identity_1`` is
   already a probability, not a logit (measured: 1e-37 to 0.002 on noise, 0.13 to 0.55 on plain
   colours, above 0.999 on a drawn person; never outside [0, 1]; MediaPipe's graph applies no
   activation to it and thresholds it at 0.5). The landmarks are used as regressed, without
   MediaPipe's refinement from the heatmap output (``Identity_3``), which is not needed at 128x64.
3. Presence below ``presence_threshold``: an all-background map flagged FLAG_NO_PERSON, with the
   presence as quality. Parts are never invented for a crop without a person.
4. Parts, built directly at the label resolution (height, width). Every label pixel's centre is
   mapped into crop pixels, so distances stay isotropic when the crop's aspect ratio differs from
   the map's. Foreground = segmentation logit > 0 (bilinear sample at the pixel centre). A segment
   of the table below is usable when both its landmarks are visible (visibility logit > 0, i.e.
   sigmoid > 0.5); each foreground pixel takes the part of the nearest usable segment, unless that
   segment is farther than ``_CUTOFF`` torso lengths (shoulder midpoint to hip midpoint, from the
   predicted coordinates, visible or not), so other people's blobs and stray foreground stay
   background. Pixels of an occluded (invisible) limb go to the nearest visible part or to
   background, never to the hidden limb. The map is made in the `eight` preset and merged into
   `five` with :func:`drop_cli.parts.from_eight`.

BlazePose's landmarks: 0 nose, 1-6 eyes, 7/8 ears, 9/10 mouth, 11/12 shoulders, 13/14 elbows,
15/16 wrists, 17-22 pinky/index/thumb, 23/24 hips, 25/26 knees, 27/28 ankles, 29/30 heels,
31/32 foot index; odd = the person's left. Two virtual landmarks are added: the neck (shoulder
midpoint) and the pelvis (hip midpoint), visible when both their landmarks are.

Measured with benchmarks/bench_pose.py on one thread of a shared 2-core machine, 128x256 crops into
128x64 maps: the input warp and the network about 17 ms, the whole ``label()`` about 20 ms (the
point-to-segment distances, float32, about 1-2 ms of it); two such processes label about 94 images/s.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from ...parts import PRESETS, from_eight, part_names
from ..base import FLAG_NO_PERSON, LabelResult

_INPUT_SIZE = 256  # the network's square input, in pixels
_PAD = 1.25  # square side / the crop's longer side
_NUM_BODY = 33  # body landmarks among the network's 39
_NECK, _PELVIS = 33, 34  # virtual landmarks appended after the body ones
_CUTOFF = 0.5  # farthest a foreground pixel may be from its segment, in torso lengths

# (landmark, landmark, part in the `eight` preset)
_SEGMENT_TABLE: tuple[tuple[int, int, str], ...] = (
    # head: nose to eyes to ears, ear to ear across the skull, mouth, and the neck up to the nose
    (0, 1, "head"),
    (1, 2, "head"),
    (2, 3, "head"),
    (3, 7, "head"),
    (0, 4, "head"),
    (4, 5, "head"),
    (5, 6, "head"),
    (6, 8, "head"),
    (7, 8, "head"),
    (9, 10, "head"),
    (0, 9, "head"),
    (0, 10, "head"),
    (_NECK, 0, "head"),
    # torso: the shoulders/hips quadrilateral, its midline and both diagonals
    (11, 12, "torso"),
    (23, 24, "torso"),
    (11, 23, "torso"),
    (12, 24, "torso"),
    (_NECK, _PELVIS, "torso"),
    (11, 24, "torso"),
    (12, 23, "torso"),
    # arms: upper arm, forearm, and the hand fan from the wrist
    (11, 13, "left_arm"),
    (13, 15, "left_arm"),
    (15, 17, "left_arm"),
    (15, 19, "left_arm"),
    (15, 21, "left_arm"),
    (17, 19, "left_arm"),
    (12, 14, "right_arm"),
    (14, 16, "right_arm"),
    (16, 18, "right_arm"),
    (16, 20, "right_arm"),
    (16, 22, "right_arm"),
    (18, 20, "right_arm"),
    # legs: thigh and shin
    (23, 25, "left_leg"),
    (25, 27, "left_leg"),
    (24, 26, "right_leg"),
    (26, 28, "right_leg"),
    # feet: ankle, heel and toe triangle
    (27, 29, "left_foot"),
    (29, 31, "left_foot"),
    (27, 31, "left_foot"),
    (28, 30, "right_foot"),
    (30, 32, "right_foot"),
    (28, 32, "right_foot"),
)
_SEG_A = np.array([a for a, _, _ in _SEGMENT_TABLE])
_SEG_B = np.array([b for _, b, _ in _SEGMENT_TABLE])
_SEG_LABEL = np.array([PRESETS["eight"].index(part) + 1 for _, _, part in _SEGMENT_TABLE], dtype=np.uint8)


def _crop_to_input(height: int, width: int) -> tuple[float, float, float]:
    """Scale and offsets (k, x0, y0) with ``input = k * (crop + (x0, y0))`` in continuous pixel
    coordinates (pixel i spans [i, i+1)): the centred square pad, then the resize to 256."""
    side = _PAD * max(height, width)
    return _INPUT_SIZE / side, (side - width) / 2, (side - height) / 2


def _nearest_segment_labels(
    px: np.ndarray, py: np.ndarray, a: np.ndarray, b: np.ndarray, labels: np.ndarray, cutoff: float
) -> np.ndarray:
    """Label of the nearest segment for each point (px[i], py[i]); 0 beyond ``cutoff``.

    px, py: [N] float32; a, b: [S, 2] float32 segment ends; labels: [S]. Vectorised over points x
    segments, in float32 (float64 is several times slower here and changes nothing at pixel scale).
    """
    d = b - a
    length2 = np.maximum((d * d).sum(1), 1e-6)
    rx = px[:, None] - a[:, 0]
    ry = py[:, None] - a[:, 1]
    t = np.clip((rx * d[:, 0] + ry * d[:, 1]) / length2, 0.0, 1.0)
    ex = rx - t * d[:, 0]
    ey = ry - t * d[:, 1]
    dist2 = ex * ex + ey * ey
    nearest = dist2.argmin(1)
    within = np.take_along_axis(dist2, nearest[:, None], 1)[:, 0] <= cutoff * cutoff
    return np.where(within, labels[nearest], 0).astype(np.uint8)


@contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """LiteRT's C++ side prints an INFO line per interpreter on file descriptor 2, which would break
    into the progress bar; silence the descriptor while the interpreter is built."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class PoseLabeler:
    """BlazePose landmarks + person segmentation -> part map (see the module docstring).

    Args:
        preset: part preset, `eight` or `five`.
        height, width: size of the label maps it returns.
        model_path: a verified ``pose_landmark_full.tflite`` (see :func:`pose_model.pose_model_path`).
        presence_threshold: crops whose person presence is below it are flagged FLAG_NO_PERSON.
        num_threads: LiteRT CPU threads for this labeler's interpreter.
    """

    name = "pose"
    version = "1"

    def __init__(
        self,
        preset: str,
        height: int,
        width: int,
        model_path: str | Path,
        presence_threshold: float = 0.5,
        num_threads: int = 1,
    ):
        from ai_edge_litert.interpreter import Interpreter

        part_names(preset)
        self.preset = preset
        self.height = height
        self.width = width
        self.presence_threshold = presence_threshold
        with _native_stderr_silenced():
            self._interpreter = Interpreter(model_path=str(model_path), num_threads=num_threads)
            self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]["index"]
        outputs = {d["name"]: d["index"] for d in self._interpreter.get_output_details()}
        self._landmarks_out = outputs["Identity"]
        self._presence_out = outputs["Identity_1"]
        self._segmentation_out = outputs["Identity_2"]

    def label(self, image: np.ndarray, relpath: str) -> LabelResult:
        """Part map of one crop.

        Args:
            image: RGB uint8 [h, w, 3] crop of any size.
            relpath: the image's dataset-relative path (unused: the image is enough).
        Returns:
            mask (height, width) uint8 in the preset's values, quality = person presence, flags.
        """
        h, w = image.shape[:2]
        k, x0, y0 = _crop_to_input(h, w)
        to_input = np.array([[k, 0, k * x0 - 0.5 * (1 - k)], [0, k, k * y0 - 0.5 * (1 - k)]])
        tensor = cv2.warpAffine(
            image,
            to_input,
            (_INPUT_SIZE, _INPUT_SIZE),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0,
        )
        self._interpreter.set_tensor(self._input, (tensor.astype(np.float32) / 255.0)[None])
        self._interpreter.invoke()
        presence = float(self._interpreter.get_tensor(self._presence_out)[0, 0])
        mask = np.zeros((self.height, self.width), dtype=np.uint8)
        if presence < self.presence_threshold:
            return LabelResult(mask, presence, FLAG_NO_PERSON)

        # Segmentation logits sampled at the label pixels' centres (inverse map: label -> input).
        sx, sy = w / self.width, h / self.height
        label_to_input = np.array([[k * sx, 0, k * (0.5 * sx + x0) - 0.5], [0, k * sy, k * (0.5 * sy + y0) - 0.5]])
        logits = self._interpreter.get_tensor(self._segmentation_out)[0, :, :, 0]
        foreground = (
            cv2.warpAffine(
                logits,
                label_to_input,
                (self.width, self.height),
                flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=-1.0,
            )
            > 0
        )
        rows, cols = np.nonzero(foreground)

        # Landmarks in crop pixels, plus the neck and pelvis; usable segments only.
        raw = self._interpreter.get_tensor(self._landmarks_out).reshape(-1, 5)[:_NUM_BODY]
        xy = raw[:, :2] / np.float32(k) - np.array([x0, y0], dtype=np.float32)
        visible = raw[:, 3] > 0
        xy = np.vstack([xy, xy[[11, 12]].mean(0), xy[[23, 24]].mean(0)])
        visible = np.append(visible, [visible[11] & visible[12], visible[23] & visible[24]])
        usable = visible[_SEG_A] & visible[_SEG_B]
        if rows.size and usable.any():
            torso_length = float(np.linalg.norm(xy[_NECK] - xy[_PELVIS]))
            mask[rows, cols] = _nearest_segment_labels(
                ((cols + 0.5) * sx).astype(np.float32),
                ((rows + 0.5) * sy).astype(np.float32),
                xy[_SEG_A[usable]],
                xy[_SEG_B[usable]],
                _SEG_LABEL[usable],
                _CUTOFF * torso_length,
            )
        return LabelResult(from_eight(mask, self.preset), presence, 0)

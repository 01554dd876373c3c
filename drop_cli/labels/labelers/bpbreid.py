"""The `bpbreid` labeler: imports the part masks that BPBreID's authors published [base].

DROP's authors used these masks (PifPaf keypoint fields filtered with Mask R-CNN). Each image has a
float ``[36, h, w]`` array in [0, 1] (h x w tiny, e.g. 17 x 9): 17 keypoint confidence fields then 19
limb fields, in PifPaf's order. The label map is made as BPBreID's data pipeline makes its training
target (``torchreid/data/masks_transforms``, then the argmax of ``ImagePartBasedEngine``):

1. a part is the maximum over its fields (``GROUPS``, BPBreID's ``CombinePifPafInto*`` groupings);
2. background is where every part is below 0.5 (``AddBackgroundMask('threshold')``; its softmax
   keeps the order), else the best part, the first on a tie;
3. the map is resized to the label size with nearest sampling: OpenCV's INTER_NEAREST, as
   albumentations 1.x resizes BPBreID's masks to the image (each output pixel takes the input pixel
   at floor(position x scale)). Steps 1-2 are per pixel, so doing them before the resize gives the
   same map.

Prepared at the network's input size (e.g. 256x128), the labels then go through augmentation and
the parsing loss's nearest downsampling exactly as BPBreID's masks do.

Files: ``<dataset folder>/masks/pifpaf_maskrcnn_filtering/<split folder>/<stem>.npy`` (Occluded-Duke:
``<name>.confidence_fields.npy``); for Occluded-REID and P-DukeMTMC-reID the per-identity folder is
left out (``occluded_body_images/<stem>.npy``), as BPBreID's ``infer_masks_path`` does.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ... import _ui
from ...errors import DropError, LabelsError
from ...parts import part_names
from ..base import FLAG_MISSING_SOURCE, LabelResult

NUM_CHANNELS = 36
THRESHOLD = 0.5
# The folder BPBreID's code reads (model.bpbreid.masks.dir), inside the dataset folder.
MASKS_FOLDER = Path("masks") / "pifpaf_maskrcnn_filtering"
# Where BPBreID's README publishes the masks of Market-1501, DukeMTMC-reID, Occluded-Duke, Occluded-ReID
# and P-DukeMTMC-reID.
MASKS_URL = "https://drive.google.com/drive/folders/1IbCAbjj3XtV3_tFOsCuqBi79ZiDqNc1H"
# Datasets whose images sit in per-identity folders that BPBreID's mask paths leave out.
_PID_FOLDERS = ("occluded_reid", "p_dukemtmc_reid")
# [base] PifPaf field indices of each part (BPBreID's groupings, by preset).
GROUPS: dict[str, tuple[tuple[int, ...], ...]] = {
    "eight": (
        (0, 1, 2, 3, 4, 29, 30, 31, 32, 33, 34, 35),  # head
        (5, 7, 9, 25, 27),  # left arm
        (6, 8, 10, 26, 28),  # right arm
        (11, 12, 21, 22, 23, 24),  # torso
        (13, 17, 18, 21),  # left leg
        (14, 19, 20),  # right leg
        (15,),  # left foot
        (16,),  # right foot
    ),
    "five": (
        (0, 1, 2, 3, 4, 29, 30, 31, 32, 33, 34, 35),  # head
        (5, 6, 7, 8, 9, 10, 25, 26, 27, 28),  # arms
        (11, 12, 21, 22, 23, 24),  # torso
        (11, 12, 13, 14, 17, 18, 19, 20, 21),  # legs
        (15, 16),  # feet
    ),
    "five_v": (
        (0, 1, 2, 3, 4, 29, 30, 31, 32, 33, 34, 35),  # head
        (5, 6, 7, 8, 24, 25, 26),  # upper arms and torso: shoulders, elbows, upper arms, shoulder line
        (9, 10, 11, 12, 23, 27, 28),  # lower arms and torso: wrists, hips, forearms, right flank
        (11, 12, 13, 14, 17, 18, 19, 20),  # legs
        (15, 16),  # feet
    ),
}


def mask_file(masks_dir: Path, relpath: str, dataset: str) -> Path:
    """Where BPBreID keeps the mask of the image ``relpath`` (relative to the dataset folder)."""
    rel = Path(relpath)
    name = f"{rel.name}.confidence_fields.npy" if dataset == "occluded_duke" else f"{rel.stem}.npy"
    folder = rel.parent.parent if dataset in _PID_FOLDERS else rel.parent
    return masks_dir / folder / name


def find_masks_dir(dataset: str, folder: Path, relpaths: list[str], explicit: str | Path | None = None) -> Path:
    """The BPBreID mask folder of a dataset: ``explicit``, else ``<folder>/masks/pifpaf_maskrcnn_filtering``
    (or the only folder in ``<folder>/masks``). A LabelsError says where to get the masks when there
    are none; images without a mask are listed in a warning (prepare-data flags them)."""
    if explicit is not None:
        masks_dir = Path(explicit).expanduser()
    else:
        masks_dir = folder / MASKS_FOLDER
        others = sorted(p for p in (folder / "masks").glob("*") if p.is_dir())
        if not masks_dir.is_dir() and len(others) == 1:
            masks_dir = others[0]
        elif not masks_dir.is_dir() and others:
            raise LabelsError(
                f"cannot tell which BPBreID masks to use: {folder / 'masks'} holds {len(others)} mask folders.",
                hint="Pass --bpbreid-masks DIR (e.g. masks/pifpaf_maskrcnn_filtering).",
            )
    if not masks_dir.is_dir():
        raise missing_masks_error(dataset, masks_dir)
    missing = [p for p in relpaths if not mask_file(masks_dir, p, dataset).is_file()]
    if relpaths and len(missing) == len(relpaths):
        raise LabelsError(
            f"none of the {len(relpaths)} images has a BPBreID mask in {masks_dir} "
            f"(looked for e.g. {mask_file(masks_dir, relpaths[0], dataset)}).",
            hint="Point --bpbreid-masks at the folder that holds the split folders.",
        )
    if missing:
        _ui.warn(
            f"{len(missing)} image(s) have no BPBreID mask and will be flagged missing_source, "
            f"e.g. {', '.join(missing[:3])}."
        )
    return masks_dir


def missing_masks_error(dataset: str, masks_dir: Path) -> LabelsError:
    """The one line for a dataset without BPBreID's masks: where they were expected, where to get them,
    and how to label with our own labeler instead."""
    return LabelsError(
        f"BPBreID's part masks for {dataset} are not in {masks_dir}: download them from BPBreID's README "
        f"({MASKS_URL}) and unzip the masks folder into the dataset folder.",
        hint="Or label the set with drop's own pose labeler instead: --set data.labeler=pose "
        "(`drop prepare-data ... --labeler pose`).",
    )


def fields_to_labels(fields: np.ndarray, preset: str, height: int, width: int) -> np.ndarray:
    """``[36, h, w]`` float fields -> ``(height, width)`` uint8 label map of ``preset`` (see the module)."""
    if fields.ndim != 3 or fields.shape[0] != NUM_CHANNELS:
        raise ValueError(f"expected a [{NUM_CHANNELS}, h, w] array, got shape {fields.shape}")
    parts = np.stack([fields[list(group)].max(axis=0) for group in GROUPS[preset]])  # [K, h, w]
    labels = np.where(parts.max(axis=0) >= THRESHOLD, parts.argmax(axis=0) + 1, 0).astype(np.uint8)
    return cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST)


class BpbreidLabeler:
    name = "bpbreid"
    version = "2"  # 2: nearest resizing, five_v, BPBreID's mask paths for Occluded-REID and P-DukeMTMC

    def __init__(self, preset: str, height: int, width: int, masks_dir: str | Path, dataset: str):
        part_names(preset)
        self.preset, self.height, self.width = preset, height, width
        self.masks_dir, self.dataset = Path(masks_dir), dataset

    def label(self, image: np.ndarray, relpath: str) -> LabelResult:
        path = mask_file(self.masks_dir, relpath, self.dataset)
        try:
            fields = np.load(path)
        except FileNotFoundError:
            return LabelResult(np.zeros((self.height, self.width), np.uint8), 0.0, FLAG_MISSING_SOURCE)
        except (ValueError, OSError) as e:
            raise DropError(
                f"bpbreid mask {path} is not a readable .npy file ({e}).", hint="Re-extract BPBreID's mask archive."
            ) from None
        try:
            return LabelResult(fields_to_labels(fields, self.preset, self.height, self.width))
        except ValueError as e:
            raise DropError(f"bpbreid mask {path}: {e}.", hint="Is --bpbreid-masks the right folder?") from None

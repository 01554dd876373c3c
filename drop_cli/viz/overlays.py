"""Part overlays: label maps blended onto their images, as a grid of pseudo labels or predicted parsing.

Layout of both pictures (constants in `canvas` and here), for ``n`` images in ``c`` columns
(``c = min(columns, n)``, ``r = ceil(n / c)``) and tiles of ``tile_height`` x ``tile_width``:

* a cell is the tile in a frame of `FRAME` px on each side, then its caption:
  ``cell_w = tile_width + 2 * FRAME``; ``cell_h = tile_height + 2 * FRAME + CAPTION_H + MARKS_H``
  (a labels cell has two caption lines, ``2 * CAPTION_H``, instead of a line and marks);
* labels grid: ``c`` cells per row, `GAP` px apart; parsing picture: ``c`` groups per row, `GROUP_GAP`
  px apart, each group ``g`` cells `GAP` px apart (image, pseudo label if given, prediction);
* width ``W = max(MIN_WIDTH, 2 * MARGIN + content width)``; height ``header_height(2, K, W)
  + r * cell_h + (r - 1) * GAP + MARGIN``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import DropError
from ..evaluation.parsing import parsing_iou, resize_nearest
from ..labels import LabelFile
from ..labels.base import FLAG_NAMES
from . import palette
from .canvas import CAPTION_H, MARGIN, MARKS_H, Canvas, header_height
from .tiles import read_images, tile_for

FRAME = 3
GAP = 6
GROUP_GAP = 18
MIN_WIDTH = 640


def overlay_parts(
    image: np.ndarray, labels: np.ndarray, colours: np.ndarray, alpha: float = 0.5, contours: bool = True
) -> np.ndarray:
    """Blend each part's colour onto the image where the label map puts it; background stays as it is.

    Args:
        image: [h, w, 3] uint8 RGB.
        labels: [H, W] integer map (0 background, 1..K parts), resampled (nearest) to [h, w] if needed.
        colours: [K + 1, 3] uint8 colour table (`palette.part_colours`).
        alpha: opacity of the part colours, 0 (invisible) to 1 (opaque).
        contours: draw each part's outline (1 px, opaque) over the blend.

    Returns:
        [h, w, 3] uint8: ``(1 - alpha) * image + alpha * colour`` inside each part.
    """
    h, w = image.shape[:2]
    if labels.shape != (h, w):
        labels = resize_nearest(labels[None], h, w)[0]
    out = image.copy()
    inside = labels > 0
    part = labels[inside]
    out[inside] = (image[inside] * (1.0 - alpha) + colours[part] * alpha + 0.5).astype(np.uint8)
    if contours:
        edge = np.zeros_like(inside)
        across, down = labels[:, 1:] != labels[:, :-1], labels[1:] != labels[:-1]
        edge[:, 1:] |= across
        edge[:, :-1] |= across
        edge[1:] |= down
        edge[:-1] |= down
        edge &= inside
        out[edge] = colours[labels[edge]]
    return out


def _grid_width(columns: int, unit: int, gap: int) -> int:
    return max(MIN_WIDTH, 2 * MARGIN + columns * unit + (columns - 1) * gap)


def _check_grid(columns: int, tile_height: int, alpha: float) -> None:
    if columns < 1 or tile_height < 16 or not 0 <= alpha <= 1:
        raise DropError(
            f"need columns >= 1, tile_height >= 16 and alpha in [0, 1]; got {columns}, {tile_height}, {alpha}."
        )


def _legend(parts: Sequence[str], colours: np.ndarray) -> list[tuple[str, tuple[int, int, int]]]:
    return [(name, tuple(int(c) for c in colours[k + 1])) for k, name in enumerate(parts)]


def _flag_text(flags: int) -> str:
    return ", ".join(name for bit, name in FLAG_NAMES.items() if flags & bit)


def choose(pool: Sequence[str], images: Sequence[str] | None, count: int | None, seed: int) -> list[int]:
    """Indices into ``pool`` of the images to draw.

    ``images`` given: those paths, in that order (each must be in ``pool``). Otherwise ``count``
    images drawn at random with ``seed``, in pool order (all of them when ``count`` is None or
    at least the pool size).

    Raises:
        DropError: an image not in the pool, an empty selection, or a count below 1.
    """
    if images is not None:
        where = {p: i for i, p in enumerate(pool)}
        unknown = [p for p in images if p not in where]
        if unknown:
            raise DropError(
                f"{len(unknown)} selected image(s) are not among the {len(pool)} candidates, e.g. {unknown[0]}.",
                hint="Give paths relative to the dataset folder, as stored in the file.",
            )
        chosen = [where[p] for p in images]
    elif count is not None and count < 1:
        raise DropError(f"the number of images must be at least 1, got {count}.")
    elif count is None or count >= len(pool):
        chosen = list(range(len(pool)))
    else:
        chosen = np.sort(np.random.default_rng(seed).choice(len(pool), size=count, replace=False)).tolist()
    if not chosen:
        raise DropError("no image to draw: the selection is empty.")
    return chosen


def draw_labels(
    out: str | Path,
    labels: LabelFile,
    folder: str | Path,
    *,
    pool: Sequence[str] | None = None,
    images: Sequence[str] | None = None,
    count: int | None = 16,
    seed: int = 0,
    columns: int = 8,
    tile_height: int = 256,
    alpha: float = 0.5,
    contours: bool = True,
) -> Path:
    """A grid of images with their pseudo labels overlaid, a legend of the part colours, flagged images framed red.

    Args:
        out: the PNG to write.
        labels: the labels file (its paths are relative to ``folder``).
        folder: the dataset folder.
        pool: the candidate images (e.g. one split's paths); default every image of the labels file.
        images: show exactly these paths, in this order (instead of a random draw from ``pool``).
        count: how many images to draw at random from ``pool`` with ``seed``; None for all.
        columns: images per row.
        tile_height: image height in px; the width follows the labels' aspect ratio.
        alpha, contours: see `overlay_parts`.

    Raises:
        DropError: a selected image is not in the pool or has no labels, or most images are missing
        under ``folder`` (labels file and folder do not belong together).
    """
    _check_grid(columns, tile_height, alpha)
    pool = list(labels.paths if pool is None else pool)
    chosen = [pool[i] for i in choose(pool, images, count, seed)]
    for rel in chosen:
        labels.index(rel)
    pictures = read_images(folder, chosen, f"images of {labels.path.name}")
    parts = labels.parts
    colours = palette.part_colours(parts)
    tile_w = round(tile_height * labels.width / labels.height)
    cols = min(columns, len(chosen))
    rows = -(-len(chosen) // cols)
    cell_w, cell_h = tile_w + 2 * FRAME, tile_height + 2 * FRAME + 2 * CAPTION_H
    width = _grid_width(cols, cell_w, GAP)
    height = header_height(2, len(parts), width) + rows * cell_h + (rows - 1) * GAP + MARGIN
    canvas = Canvas(height, width)
    how = "as selected" if images is not None else (f"random, seed {seed}" if len(chosen) < len(pool) else "all")
    top = canvas.header(
        f"Pseudo labels: {labels.path.name}",
        [
            (
                f"{labels.attrs.get('dataset', '?')} · preset {labels.attrs.get('preset', '?')} · labeler "
                f"{labels.attrs.get('labeler', '?')} · {len(chosen)} of {len(pool)} images ({how})"
            ),
            "red frame: flagged by the labeler (flag under the image) · grey cross: image missing",
        ],
        _legend(parts, colours),
    )
    for i, rel in enumerate(chosen):
        y, x = top + (i // cols) * (cell_h + GAP), MARGIN + (i % cols) * (cell_w + GAP)
        tile = _overlaid(*tile_for(pictures[rel], tile_height, tile_w), labels[rel], colours, alpha, contours)
        flags = _flag_text(labels.flags(rel))
        canvas.frame(y, x, tile_height + 2 * FRAME, cell_w, palette.FLAGGED if flags else palette.NEUTRAL, FRAME)
        canvas.paste(tile, y + FRAME, x + FRAME)
        caption_y = y + tile_height + 2 * FRAME + 1
        canvas.text(x, caption_y, Path(rel).name, max_width=cell_w, middle=True)
        notes = [note for note in (flags, "missing image" if pictures[rel] is None else "") if note]
        quality = labels.quality(rel)
        if notes:
            canvas.text(x, caption_y + CAPTION_H, " · ".join(notes), colour=palette.FLAGGED, max_width=cell_w)
        elif quality < 1:
            canvas.text(x, caption_y + CAPTION_H, f"presence {quality:.2f}", colour=palette.MUTED, max_width=cell_w)
    return canvas.save(out)


def draw_parsing(
    out: str | Path,
    folder: str | Path,
    paths: Sequence[str],
    predicted: np.ndarray,
    parts: Sequence[str],
    labels: LabelFile | None = None,
    *,
    images: Sequence[str] | None = None,
    count: int | None = 8,
    seed: int = 0,
    columns: int = 3,
    tile_height: int = 256,
    alpha: float = 0.5,
) -> Path:
    """Predicted parsing next to the pseudo label of the same image, with per-part visibility marks.

    Each image is a group of tiles: the image, its pseudo label (when ``labels`` is given) and the
    predicted map, both overlaid. Under each map a row of squares, one per part: filled where the
    part appears in the map (for the prediction: the part is visible), an outline where it does not.
    The prediction's caption gives its mean IoU against the pseudo label over the parts in either.

    Args:
        out: the PNG to write.
        folder: the dataset folder.
        paths: [N] image paths relative to ``folder``.
        predicted: [N, h, w] integer predicted label maps (e.g. a quarter of the input size).
        parts: the K part names of the label values 1..K.
        labels: the pseudo labels of the same images, or None to draw the prediction alone.
        images, count, seed: which images (see `draw_labels`); the pool is ``paths``.
        columns: groups per row.
        tile_height: image height in px; the width follows the predicted maps' aspect ratio.
        alpha: opacity of the part colours.

    Raises:
        DropError: ``predicted`` does not match ``paths`` or has values above K; an image without
        labels; most images missing under ``folder``.
    """
    _check_grid(columns, tile_height, alpha)
    predicted = np.asarray(predicted)
    if predicted.ndim != 3 or len(predicted) != len(paths) or not np.issubdtype(predicted.dtype, np.integer):
        raise DropError(
            f"predicted parsing must be integer maps [N, h, w] for the {len(paths)} paths, got "
            f"{predicted.dtype} {predicted.shape}."
        )
    if predicted.size and (predicted.min() < 0 or predicted.max() > len(parts)):
        raise DropError(f"predicted parsing has label values outside 0..{len(parts)} ({len(parts)} parts).")
    if labels is not None and tuple(labels.parts) != tuple(parts):
        raise DropError(
            f"the labels file has parts {list(labels.parts)}, the prediction {list(parts)}.",
            hint="Use the labels file of the preset the model was trained with.",
        )
    chosen = choose(list(paths), images, count, seed)
    rels = [paths[i] for i in chosen]
    truths = [labels[rel] for rel in rels] if labels is not None else None
    pictures = read_images(folder, rels, "images")
    colours = palette.part_colours(parts)
    tile_w = round(tile_height * predicted.shape[2] / predicted.shape[1])
    per_group = 3 if labels is not None else 2
    cell_w, cell_h = tile_w + 2 * FRAME, tile_height + 2 * FRAME + CAPTION_H + MARKS_H
    group_w = per_group * cell_w + (per_group - 1) * GAP
    cols = min(columns, len(rels))
    rows = -(-len(rels) // cols)
    width = _grid_width(cols, group_w, GROUP_GAP)
    height = header_height(2, len(parts), width) + rows * cell_h + (rows - 1) * GAP + MARGIN
    canvas = Canvas(height, width)
    kinds = "image | pseudo label | prediction" if labels is not None else "image | prediction"
    size = f"{predicted.shape[1]}x{predicted.shape[2]}"
    top = canvas.header(
        f"Predicted parsing{' against pseudo labels: ' + labels.path.name if labels is not None else ''}",
        [
            f"{len(rels)} of {len(paths)} images · each group: {kinds} (predicted at {size})",
            "squares: part present (filled) or absent (outline)"
            + (" · mIoU: prediction against the pseudo label" if labels is not None else ""),
        ],
        _legend(parts, colours),
    )
    for i, rel in enumerate(rels):
        y = top + (i // cols) * (cell_h + GAP)
        x = MARGIN + (i % cols) * (group_w + GROUP_GAP)
        tile, box = tile_for(pictures[rel], tile_height, tile_w)
        pred = predicted[chosen[i]]
        cells = [(tile, None, Path(rel).name if pictures[rel] is not None else "missing image")]
        if truths is not None:
            iou = parsing_iou(pred[None], truths[i][None], len(parts) + 1)[1:]
            cells.append((_overlaid(tile, box, truths[i], colours, alpha), truths[i], "pseudo label"))
            summary = f"mIoU {np.nanmean(iou):.2f}" if np.isfinite(iou).any() else "no part"
            cells.append((_overlaid(tile, box, pred, colours, alpha), pred, f"pred · {summary}"))
        else:
            cells.append((_overlaid(tile, box, pred, colours, alpha), pred, "predicted"))
        for j, (picture, label_map, caption) in enumerate(cells):
            cx = x + j * (cell_w + GAP)
            canvas.frame(y, cx, tile_height + 2 * FRAME, cell_w, palette.NEUTRAL, FRAME)
            canvas.paste(picture, y + FRAME, cx + FRAME)
            caption_y = y + tile_height + 2 * FRAME + 1
            missing = j == 0 and pictures[rel] is None
            canvas.text(
                cx,
                caption_y,
                caption,
                colour=palette.FLAGGED if missing else palette.TEXT,
                max_width=cell_w,
                middle=j == 0,
            )
            if label_map is not None:
                present = np.zeros(len(parts) + 1, bool)
                present[np.unique(label_map)] = True
                canvas.marks(caption_y + CAPTION_H, cx, cell_w, present[1:], colours[1:])
    return canvas.save(out)


def _overlaid(
    tile: np.ndarray,
    box: tuple[int, int, int, int],
    labels: np.ndarray,
    colours: np.ndarray,
    alpha: float,
    contours: bool = True,
) -> np.ndarray:
    """A copy of ``tile`` with ``labels`` overlaid inside the image's ``box`` (top, left, h, w)."""
    top, left, h, w = box
    out = tile.copy()
    out[top : top + h, left : left + w] = overlay_parts(
        tile[top : top + h, left : left + w], labels, colours, alpha, contours
    )
    return out

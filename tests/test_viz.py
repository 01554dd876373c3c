"""Pictures: exact sizes from the documented layouts, overlay colours, placeholders, errors, worst-AP picks."""

from __future__ import annotations

import math
import shutil

import cv2
import numpy as np
import pytest

from drop_cli.data import load_dataset
from drop_cli.errors import DropError
from drop_cli.evaluation import average_precision, evaluate_rank
from drop_cli.evaluation.parsing import resize_nearest
from drop_cli.labels import LabelFile, LabelWriter
from drop_cli.viz import (
    ImageSet,
    canvas,
    draw_embeddings,
    draw_labels,
    draw_parsing,
    draw_ranking,
    overlay_parts,
    overlays,
    palette,
    part_colours,
    plot_training_curves,
    ranking,
    read_history,
    tiles,
)
from drop_cli.viz.ranking import pick_queries
from drop_cli.viz.tiles import placeholder

TORSO = 4  # label value of `torso` in the `eight` preset


def png_size(path) -> tuple[int, int]:
    image = cv2.imread(str(path))
    assert image is not None, f"{path} is not a readable image"
    return image.shape[:2]


def read_rgb(path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def header(subtitle_lines: int, legend_entries: int, width: int) -> int:
    per_line = (width - 2 * canvas.MARGIN) // canvas.LEGEND_SLOT
    legend = math.ceil(legend_entries / per_line) * canvas.LEGEND_H
    return canvas.MARGIN + canvas.TITLE_H + subtitle_lines * canvas.SUBTITLE_H + legend + canvas.HEADER_GAP


def no_temporary_files(folder) -> bool:
    return not [p for p in folder.iterdir() if p.name.startswith(".")]


@pytest.fixture(scope="module")
def dataset(synthetic_root):
    return load_dataset("synthetic", synthetic_root)


@pytest.fixture(scope="module")
def labels(synthetic_labels):
    with LabelFile(synthetic_labels) as file:
        yield file


def image_set(records, parts=(), visible=None) -> ImageSet:
    return ImageSet(
        [r.path for r in records],
        np.array([r.pid for r in records]),
        np.array([r.camid for r in records]),
        visible,
        tuple(parts),
    )


# ----------------------------------------------------------------------------- overlays


def test_overlay_blends_the_part_colour_where_the_labels_put_it():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 32, 3), dtype=np.uint8)
    labels = np.zeros((64, 32), np.uint8)
    labels[20:40, 8:24] = TORSO
    colours = part_colours(
        ("head", "left_arm", "right_arm", "torso", "left_leg", "right_leg", "left_foot", "right_foot")
    )
    out = overlay_parts(image, labels, colours, alpha=0.4, contours=True)
    expected = np.round(0.6 * image[21:39, 9:23] + 0.4 * np.array(palette.PART_COLOURS["torso"]))
    assert np.abs(out[21:39, 9:23].astype(int) - expected).max() <= 1  # inside: blended torso colour
    assert (out[20, 8:24] == palette.PART_COLOURS["torso"]).all()  # outline: the torso colour itself
    assert (out[:20] == image[:20]).all() and (out[40:] == image[40:]).all()  # background untouched


def test_overlay_resamples_a_smaller_label_map():
    image = np.full((64, 32, 3), 100, np.uint8)
    labels = np.zeros((16, 8), np.uint8)
    labels[4:8, 2:6] = TORSO  # rows 16..31, columns 8..23 at full size
    out = overlay_parts(image, labels, part_colours(("a", "b", "c", "torso")), alpha=1.0, contours=False)
    assert (out[16:32, 8:24] == palette.PART_COLOURS["torso"]).all()
    assert (out[:16] == 100).all() and (out[32:] == 100).all()


def test_labels_grid_size_legend_and_flag_frame(tmp_path, labels, dataset):
    chosen = [r.path for r in dataset.query[:3]]
    flagged = tmp_path / "flagged.h5"
    with LabelWriter(
        flagged,
        chosen,
        labels.height,
        labels.width,
        {k: labels.attrs[k] for k in ("dataset", "preset", "parts", "labeler", "labeler_version")},
    ) as writer:
        writer.write(0, np.stack([labels[p] for p in chosen]), np.ones(3, np.float32), np.array([0, 2, 0], np.uint8))
        writer.commit()
    out = tmp_path / "pictures" / "labels.png"
    draw_labels(out, LabelFile(flagged), dataset.folder, columns=3, tile_height=128)
    cell_w, cell_h = 64 + 2 * overlays.FRAME, 128 + 2 * overlays.FRAME + 2 * canvas.CAPTION_H
    width = max(overlays.MIN_WIDTH, 2 * canvas.MARGIN + 3 * cell_w + 2 * overlays.GAP)
    top = header(2, 8, width)
    assert png_size(out) == (top + cell_h + canvas.MARGIN, width)
    rgb = read_rgb(out)
    frames = [tuple(rgb[top + 1, canvas.MARGIN + i * (cell_w + overlays.GAP) + 1]) for i in range(3)]
    assert frames == [palette.NEUTRAL, palette.FLAGGED, palette.NEUTRAL]
    legend_square = rgb[top - canvas.HEADER_GAP - 2 * canvas.LEGEND_H + 8, canvas.MARGIN + 6]
    assert tuple(legend_square) == palette.PART_COLOURS["head"]
    assert no_temporary_files(out.parent)


def test_labels_grid_random_selection_of_a_split(tmp_path, labels, dataset):
    out = draw_labels(
        tmp_path / "a.png",
        labels,
        dataset.folder,
        pool=[r.path for r in dataset.train],
        count=10,
        seed=1,
        columns=8,
        tile_height=64,
    )
    cell_w, cell_h = 32 + 2 * overlays.FRAME, 64 + 2 * overlays.FRAME + 2 * canvas.CAPTION_H
    width = max(overlays.MIN_WIDTH, 2 * canvas.MARGIN + 8 * cell_w + 7 * overlays.GAP)
    assert png_size(out) == (header(2, 8, width) + 2 * cell_h + overlays.GAP + canvas.MARGIN, width)
    again = draw_labels(
        tmp_path / "b.png",
        labels,
        dataset.folder,
        pool=[r.path for r in dataset.train],
        count=10,
        seed=1,
        columns=8,
        tile_height=64,
    )
    assert (read_rgb(out) == read_rgb(again)).all()


def test_missing_image_is_a_placeholder_with_a_warning(tmp_path, labels, dataset, capsys):
    folder = tmp_path / "copy"
    shutil.copytree(dataset.folder / "query", folder / "query")
    chosen = [r.path for r in dataset.query[:3]]
    (folder / chosen[1]).unlink()
    out = draw_labels(tmp_path / "labels.png", labels, folder, images=chosen, columns=3, tile_height=128)
    assert "1 of 3 images" in capsys.readouterr().err
    cell_w = 64 + 2 * overlays.FRAME
    top = header(2, 8, overlays.MIN_WIDTH)
    rgb = read_rgb(out)
    # the left edge, half-way down the second tile: neither the cross nor (outside the person) a part
    pixel = rgb[top + overlays.FRAME + 64, canvas.MARGIN + cell_w + overlays.GAP + overlays.FRAME]
    assert tuple(pixel) == tiles._PLACEHOLDER
    assert placeholder(128, 64).shape == (128, 64, 3)


def test_labels_and_folder_that_do_not_belong_together(tmp_path, labels):
    with pytest.raises(DropError, match="missing under"):
        draw_labels(tmp_path / "x.png", labels, tmp_path, count=6)
    assert not (tmp_path / "x.png").exists()


def test_labels_selection_errors(tmp_path, labels, dataset):
    with pytest.raises(DropError, match="not among"):
        draw_labels(tmp_path / "x.png", labels, dataset.folder, images=["query/nope.jpg"])
    with pytest.raises(DropError, match="at least 1"):
        draw_labels(tmp_path / "x.png", labels, dataset.folder, count=0)


# ----------------------------------------------------------------------------- parsing


@pytest.mark.parametrize("with_labels", [True, False])
def test_parsing_picture_size(tmp_path, labels, dataset, with_labels):
    paths = [r.path for r in dataset.query[:5]]
    predicted = resize_nearest(np.stack([labels[p] for p in paths]), labels.height // 4, labels.width // 4)
    out = draw_parsing(
        tmp_path / "parsing.png",
        dataset.folder,
        paths,
        predicted,
        labels.parts,
        labels if with_labels else None,
        count=4,
        columns=2,
        tile_height=128,
    )
    per_group = 3 if with_labels else 2
    cell_w, cell_h = 64 + 2 * overlays.FRAME, 128 + 2 * overlays.FRAME + canvas.CAPTION_H + canvas.MARKS_H
    group_w = per_group * cell_w + (per_group - 1) * overlays.GAP
    width = max(overlays.MIN_WIDTH, 2 * canvas.MARGIN + 2 * group_w + overlays.GROUP_GAP)
    assert png_size(out) == (header(2, 8, width) + 2 * cell_h + overlays.GAP + canvas.MARGIN, width)


def test_parsing_rejects_bad_predictions(tmp_path, labels, dataset):
    paths = [r.path for r in dataset.query[:2]]
    with pytest.raises(DropError, match="outside 0..8"):
        draw_parsing(tmp_path / "p.png", dataset.folder, paths, np.full((2, 64, 32), 9, np.uint8), labels.parts)
    with pytest.raises(DropError, match=r"\[N, h, w\]"):
        draw_parsing(tmp_path / "p.png", dataset.folder, paths, np.zeros((3, 64, 32), np.uint8), labels.parts)


# ----------------------------------------------------------------------------- ranking


def test_ranking_grid_size(tmp_path, labels, dataset):
    rng = np.random.default_rng(0)
    parts = labels.parts
    query = image_set(dataset.query, parts, rng.random((len(dataset.query), len(parts))))
    gallery = image_set(dataset.gallery, parts, rng.random((len(dataset.gallery), len(parts))))
    distmat = rng.random((len(dataset.query), len(dataset.gallery)))
    out = draw_ranking(tmp_path / "ranking.png", dataset.folder, query, gallery, distmat, count=3, k=10)
    cell_w = 64 + 2 * ranking.BORDER
    cell_h = 128 + 2 * ranking.BORDER + 2 * canvas.CAPTION_H + canvas.MARKS_H
    width = 2 * canvas.MARGIN + ranking.GUTTER + cell_w + ranking.QUERY_GAP + 10 * cell_w + 9 * ranking.GAP
    assert width > ranking.MIN_WIDTH
    height = header(2, len(parts) + 3, width) + ranking.COLUMN_HEAD_H + 3 * cell_h + 2 * ranking.ROW_GAP
    assert png_size(out) == (height + canvas.MARGIN, width)
    assert no_temporary_files(tmp_path)


def test_ranking_frames_follow_identity(tmp_path, dataset):
    query, gallery = image_set(dataset.query), image_set(dataset.gallery)
    same = (gallery.pids[None] == query.pids[:, None]) & (gallery.camids[None] != query.camids[:, None])
    distmat = np.where(same, 0.0, 1.0) + np.arange(len(dataset.gallery)) * 1e-4  # matches first
    out = draw_ranking(tmp_path / "r.png", dataset.folder, query, gallery, distmat, queries=[0], k=2, tile_height=64)
    top = header(2, 3, ranking.MIN_WIDTH) + ranking.COLUMN_HEAD_H
    left = canvas.MARGIN + ranking.GUTTER
    rgb = read_rgb(out)
    cell_w = 32 + 2 * ranking.BORDER
    assert tuple(rgb[top + 1, left + 1]) == palette.QUERY
    assert tuple(rgb[top + 1, left + cell_w + ranking.QUERY_GAP + 1]) == palette.SAME_ID
    far = np.where(same, 1.0, 0.0)  # non-matches first
    out = draw_ranking(tmp_path / "r.png", dataset.folder, query, gallery, far, queries=[0], k=2, tile_height=64)
    assert tuple(read_rgb(out)[top + 1, left + cell_w + ranking.QUERY_GAP + 1]) == palette.OTHER_ID


def test_ranking_errors(tmp_path, dataset):
    query, gallery = image_set(dataset.query), image_set(dataset.gallery)
    distmat = np.zeros((len(dataset.query), len(dataset.gallery)))
    with pytest.raises(DropError, match="unknown query id 999"):
        draw_ranking(tmp_path / "r.png", dataset.folder, query, gallery, distmat, query_ids=[999])
    with pytest.raises(DropError, match="out of range"):
        draw_ranking(tmp_path / "r.png", dataset.folder, query, gallery, distmat, queries=[len(dataset.query)])
    with pytest.raises(DropError, match="shape"):
        draw_ranking(tmp_path / "r.png", dataset.folder, query, gallery, distmat[:, 1:])
    with pytest.raises(DropError, match="missing under"):
        draw_ranking(tmp_path / "r.png", tmp_path, query, gallery, distmat, count=2)


def test_worst_queries_by_average_precision():
    # gallery: pids 1 1 2 2 3, cameras all 1; queries (camera 0) of pids 1, 2, 3 and 4 (no match)
    g_pids, g_cams = np.array([1, 1, 2, 2, 3]), np.ones(5, int)
    q_pids, q_cams = np.array([1, 2, 3, 4]), np.zeros(4, int)
    distmat = np.array(
        [
            [0.1, 0.2, 0.3, 0.4, 0.5],  # pid 1: matches at ranks 1, 2 -> AP 1
            [0.1, 0.2, 0.3, 0.9, 0.4],  # pid 2: matches at ranks 3, 5 -> AP (1/3 + 2/5) / 2 = 0.3667
            [0.1, 0.2, 0.3, 0.4, 0.25],  # pid 3: match at rank 3 -> AP 1/3
            [0.1, 0.2, 0.3, 0.4, 0.5],  # pid 4: no valid match
        ]
    )
    ap = average_precision(distmat, q_pids, g_pids, q_cams, g_cams)
    assert np.allclose(ap[:3], [1.0, (1 / 3 + 2 / 5) / 2, 1 / 3]) and np.isnan(ap[3])
    assert pick_queries(q_pids, ap, worst=2).tolist() == [2, 1]
    assert pick_queries(q_pids, ap, worst=10).tolist() == [2, 1, 0]
    assert pick_queries(q_pids, ap, query_ids=[3, 1]).tolist() == [2, 0]
    with pytest.raises(DropError, match="one way"):
        pick_queries(q_pids, ap, worst=1, queries=[0])


def test_average_precision_matches_the_evaluation_with_ties_junk_and_same_camera():
    rng = np.random.default_rng(1)
    q_pids, q_cams = rng.integers(1, 8, 40), rng.integers(0, 3, 40)
    g_pids, g_cams = np.r_[rng.integers(1, 8, 180), np.full(10, -1), np.zeros(10, int)], rng.integers(0, 3, 200)
    distmat = np.round(rng.random((40, 200)), 1)  # many ties
    ap = average_precision(distmat, q_pids, g_pids, q_cams, g_cams)
    result = evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams)
    assert np.isfinite(ap).sum() == result["num_valid_queries"]
    assert np.nanmean(ap) == pytest.approx(result["mAP"], abs=1e-12)


# ----------------------------------------------------------------------------- embeddings and curves


@pytest.mark.parametrize("method", ["tsne", "pca"])
def test_embeddings_picture(tmp_path, method):
    rng = np.random.default_rng(0)
    pids = np.repeat(np.arange(1, 13), 6)
    embeddings = rng.normal(size=(len(pids), 3, 16)) + pids[:, None, None]
    visibility = np.ones((len(pids), 3))
    visibility[::2, 2] = 0
    out = draw_embeddings(
        tmp_path / "e.png",
        embeddings,
        ("global", "foreground", "torso"),
        pids,
        row="torso",
        visibility=visibility,
        num_ids=5,
        method=method,
    )
    assert png_size(out) == (700, 900)
    with pytest.raises(DropError, match="unknown embedding row"):
        draw_embeddings(tmp_path / "e.png", embeddings, ("global", "foreground", "torso"), pids, row="tail")
    with pytest.raises(DropError, match="no sample of id 99"):
        draw_embeddings(tmp_path / "e.png", embeddings, ("global", "foreground", "torso"), pids, ids=[1, 99])


def test_training_curves_from_metrics_csv(tmp_path):
    csv_path = tmp_path / "metrics.csv"
    lines = ["epoch,lr,id_global,parsing,loss,images_per_s,memory,rank1,mAP,mINP"]
    lines += [
        f"{e},{1e-3 * min(1, e / 2)},{3 / e},{0.3 / e},{3.3 / e},100,{int(e > 2)},"
        + (f"{0.1 * e},{0.08 * e},{0.02 * e}" if e % 2 == 0 else ",,")
        for e in range(1, 7)
    ]
    csv_path.write_text("\n".join(lines) + "\n")
    history = read_history(csv_path)
    assert history[0]["epoch"] == 1.0 and "mAP" not in history[0] and history[1]["mAP"] == pytest.approx(0.16)
    out = plot_training_curves(history, tmp_path / "curves.png")
    assert png_size(out) == (460, 1600)
    assert png_size(plot_training_curves(history[:1], tmp_path / "one.png")) == (460, 1600)
    assert no_temporary_files(tmp_path)

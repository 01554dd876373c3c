"""The synthetic occluded-pedestrian generator: split plan, determinism and ground-truth part maps."""

from __future__ import annotations

import dataclasses
import re
from collections import defaultdict

import cv2
import numpy as np
import pytest

from drop_cli.errors import DropError
from drop_cli.parts import PRESETS
from drop_cli.synthetic import CAMERAS, IMAGE_HEIGHT, IMAGE_WIDTH, SyntheticItem, canvas, look, plan, render

NUM_IDS, SEED = 100, 0
DUKE_NAME = re.compile(r"([-\d]+)_c(\d)")
PART = {name: i + 1 for i, name in enumerate(PRESETS["eight"])}


@pytest.fixture(scope="module")
def items() -> list[SyntheticItem]:
    return plan(NUM_IDS, SEED)


def split(items: list[SyntheticItem], name: str) -> list[SyntheticItem]:
    return [it for it in items if it.split == name]


def visible(item: SyntheticItem) -> np.ndarray:
    """The part map of ``item`` rendered without its occluders (same scene otherwise)."""
    return render(dataclasses.replace(item, occluded=False), NUM_IDS, SEED)[1]


# ----------------------------------------------------------------------------- plan


def test_split_sizes_suit_a_cpu_quick_start(items):
    sizes = {name: len(split(items, name)) for name in ("train", "query", "gallery")}
    assert 800 <= sizes["train"] <= 1000
    assert 80 <= sizes["query"] <= 120
    assert 400 <= sizes["gallery"] <= 500
    assert len(items) == sum(sizes.values())


def test_names_follow_occluded_duke(items):
    folders = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
    for it in items:
        folder, name = it.relpath.split("/")
        assert folder == folders[it.split]
        assert re.fullmatch(r"\d{4}_c\d_f\d{7}\.jpg", name), name
        pid, camid = map(int, DUKE_NAME.search(name).groups())
        assert (pid, camid) == (it.pid, it.camid)
        assert 1 <= it.camid <= CAMERAS
    assert len({it.relpath for it in items}) == len(items)
    assert len({it.seed for it in items}) == len(items)


def test_train_and_test_identities_are_disjoint(items):
    train = {it.pid for it in split(items, "train")}
    query = {it.pid for it in split(items, "query")}
    gallery = {it.pid for it in split(items, "gallery")}
    assert train == set(range(1, NUM_IDS // 2 + 1))
    assert not train & (query | gallery)
    assert query < gallery  # gallery-only identities act as distractors


def test_every_query_has_a_gallery_match_in_another_camera(items):
    cameras = defaultdict(set)
    for it in split(items, "gallery"):
        cameras[it.pid].add(it.camid)
    for q in split(items, "query"):
        assert cameras[q.pid] - {q.camid}, q.relpath


def test_occlusion_shares(items):
    assert all(it.occluded for it in split(items, "query"))
    for name, low, high in (("gallery", 0.08, 0.12), ("train", 0.15, 0.25)):
        share = np.mean([it.occluded for it in split(items, name)])
        assert low <= share <= high, (name, share)


def test_plan_is_deterministic_and_depends_on_the_seed(items):
    assert plan(NUM_IDS, SEED) == items
    assert plan(NUM_IDS, SEED + 1) != items


@pytest.mark.parametrize("num_ids", [4, 5, 12])
def test_small_datasets_still_have_a_query_with_a_match(num_ids):
    items = plan(num_ids, 7)
    queries = split(items, "query")
    assert queries
    for q in queries:
        assert any(g.pid == q.pid and g.camid != q.camid for g in split(items, "gallery"))


@pytest.mark.parametrize("num_ids, seed", [(3, 0), (0, 0), (2.5, 0), (True, 0), (10000, 0), (10, -1), (10, 1.5)])
def test_bad_arguments_raise_drop_errors(num_ids, seed):
    with pytest.raises(DropError):
        plan(num_ids, seed)


def test_render_rejects_items_of_another_dataset(items):
    with pytest.raises(DropError, match="outside 1..10"):
        render(items[-1], 10, SEED)
    with pytest.raises(DropError, match="camera"):
        render(dataclasses.replace(items[0], camid=CAMERAS + 1), NUM_IDS, SEED)


# ----------------------------------------------------------------------------- render


def test_render_is_a_pure_function(items):
    picks = [items[0], split(items, "query")[0], split(items, "gallery")[3]]
    first = [render(it, NUM_IDS, SEED) for it in picks]
    for cache in (look._identity, look._cameras, canvas._tiles):  # as in a fresh process
        cache.cache_clear()
    again = [render(it, NUM_IDS, SEED) for it in reversed(picks)][::-1]
    for (image, parts), (image2, parts2) in zip(first, again):
        assert image.tobytes() == image2.tobytes()
        assert parts.tobytes() == parts2.tobytes()


def test_different_seeds_give_different_images(items):
    image, _ = render(items[0], NUM_IDS, SEED)
    assert not np.array_equal(image, render(items[0], NUM_IDS, SEED + 1)[0])
    assert not np.array_equal(image, render(dataclasses.replace(items[0], seed=items[0].seed + 1), NUM_IDS, SEED)[0])


def test_outputs_have_the_documented_shapes_and_ranges(items):
    for it in items[::150]:
        image, parts = render(it, NUM_IDS, SEED)
        assert image.shape == (IMAGE_HEIGHT, IMAGE_WIDTH, 3) and image.dtype == np.uint8
        assert parts.shape == (IMAGE_HEIGHT, IMAGE_WIDTH) and parts.dtype == np.uint8
        assert parts.max() <= len(PRESETS["eight"])


def test_unoccluded_figures_show_all_parts_with_consistent_sides(items):
    facing = set()
    for it in [it for it in split(items, "train") if not it.occluded][:30]:
        _, parts = render(it, NUM_IDS, SEED)
        assert set(np.unique(parts)) == set(range(9)), it.relpath

        def side(left: str, right: str, parts: np.ndarray = parts) -> float:
            return np.sign(np.nonzero(parts == PART[left])[1].mean() - np.nonzero(parts == PART[right])[1].mean())

        sides = {side("left_arm", "right_arm"), side("left_leg", "right_leg"), side("left_foot", "right_foot")}
        assert len(sides) == 1, it.relpath  # a person's left limbs are all on the same side of the image
        facing |= sides
        rows = np.nonzero(parts)[0]
        mean_row = {name: np.nonzero(parts == PART[name])[0].mean() for name in ("head", "torso", "left_leg")}
        assert mean_row["head"] < mean_row["torso"] < mean_row["left_leg"]
        shoulders = np.nonzero(parts == PART["torso"])[0].min()
        assert 0.12 < (shoulders - rows.min()) / (rows.max() - rows.min()) < 0.24  # a head 1/7 to 1/8 of the body
    assert facing == {-1.0, 1.0}  # both front (left on the image's right) and back views occur


def test_occluders_hide_a_large_share_of_the_body(items):
    shares = []
    for q in split(items, "query")[:20]:
        _, parts = render(q, NUM_IDS, SEED)
        whole = visible(q)
        kept = parts > 0
        assert np.array_equal(parts[kept], whole[kept])  # occluders only remove part pixels
        shares.append(1 - kept.sum() / (whole > 0).sum())
    assert min(shares) > 0.2 and max(shares) < 0.75
    assert 0.3 <= np.median(shares) <= 0.6


def test_part_pixels_match_what_is_drawn(items):
    """Parts differ in colour from the background, and image edges lie on the part map's edges."""
    differences, edge_ratios = [], []
    for it in [it for it in split(items, "gallery") if not it.occluded][:10]:
        image, parts = render(it, NUM_IDS, SEED)
        figure = (parts > 0).astype(np.uint8)
        differences.append(np.linalg.norm(image[figure > 0].mean(0) - image[figure == 0].mean(0)))
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
        gradient = np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))
        kernel = np.ones((3, 3), np.uint8)
        outline = cv2.dilate(figure, kernel) != cv2.erode(figure, kernel)
        edge_ratios.append(gradient[outline].mean() / gradient[~outline].mean())
    assert np.median(differences) > 20
    assert min(edge_ratios) > 1.2 and np.median(edge_ratios) > 2.5


def test_identity_is_carried_by_appearance(items):
    """Images of one identity are closer in clothing colour than images of different identities."""
    colours, pids = [], []
    for pid in range(1, 13):
        for it in [it for it in items if it.pid == pid and not it.occluded][:4]:
            image, parts = render(it, NUM_IDS, SEED)
            legs = (parts == PART["left_leg"]) | (parts == PART["right_leg"])
            colours.append(np.concatenate([image[parts == PART["torso"]].mean(0), image[legs].mean(0)]))
            pids.append(pid)
    colours, pids = np.array(colours), np.array(pids)
    distance = np.linalg.norm(colours[:, None] - colours[None], axis=2)
    same = pids[:, None] == pids[None]
    off_diagonal = ~np.eye(len(pids), dtype=bool)
    assert np.median(distance[same & off_diagonal]) < 0.75 * np.median(distance[~same])


def test_clustered_embeddings_are_unit_rows_with_hidden_parts_and_findable_identities():
    from drop_cli.evaluation import part_distance
    from drop_cli.synthetic.embeddings import clustered_embeddings

    data = clustered_embeddings(600, 20, rows=6, dim=32, noise=1.0, hidden=0.25, seed=4)
    again = clustered_embeddings(600, 20, rows=6, dim=32, noise=1.0, hidden=0.25, seed=4)
    np.testing.assert_array_equal(data.embeddings, again.embeddings)
    assert data.embeddings.shape == (600, 6, 32) and data.embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(data.embeddings, axis=2), 1.0, atol=1e-5)
    assert (data.visibility[:, :2] == 1).all() and abs((data.visibility[:, 2:] == 0).mean() - 0.25) < 0.03
    assert np.bincount(data.pids).tolist() == [30] * 20
    dist = part_distance(data.embeddings[:50], data.visibility[:50], data.embeddings, data.visibility, device="cpu")
    dist[np.arange(50), np.arange(50)] = np.inf  # not itself
    assert (data.pids[dist.argmin(axis=1)] == data.pids[:50]).mean() > 0.9  # the nearest image is of its identity
    half = clustered_embeddings(10, 2, rows=3, dim=8, dtype=np.float16)
    assert half.embeddings.dtype == np.float16

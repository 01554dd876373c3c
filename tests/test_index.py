"""The gallery index (`drop index`, indexed `drop search`): rows read by offset, the index vector, the exact
re-scoring of the candidates, recall, growth without training again, and its bad inputs.

The galleries are clustered synthetic embeddings (`drop_cli.synthetic.embeddings`) written as features
files; the command-line search uses the session's untrained model on the synthetic images."""

from __future__ import annotations

import json
import sys

import h5py
import numpy as np
import pytest

pytest.importorskip("faiss")

from drop_cli import api
from drop_cli.cli import main
from drop_cli.errors import DropError
from drop_cli.evaluation.distance import part_distance
from drop_cli.evaluation.rerank import re_rank
from drop_cli.evaluation.scoring import Rerank, make_setting, setting_distances
from drop_cli.features.file import FeatureFile, write_features
from drop_cli.features.rows import SplitRows
from drop_cli.index import GalleryIndex, GallerySearch, build_index, index_path
from drop_cli.parts import part_names, row_names
from drop_cli.synthetic.embeddings import clustered_embeddings

NAMES = row_names(part_names("eight"))
DIM = 32  # small rows keep the tests fast; the distance and the index do not depend on D


def clustered_file(path, images, *, queries=50, noise=0.8, seed=0, dtype="float16", dim=DIM):
    data = clustered_embeddings(  # in the file's dtype: the tests' exact distances see the file's values
        queries + images, max(1, (queries + images) // 20), dim=dim, noise=noise, seed=seed, dtype=np.dtype(dtype).type
    )
    splits = {"query": data.take(slice(0, queries)), "gallery": data.take(slice(queries, None))}
    write_features(path, splits, NAMES, {}, dtype)
    return splits


def run(capsys, argv):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_rows_by_offset_equal_h5py_for_any_rows(tmp_path, dtype):
    splits = clustered_file(tmp_path / "f.h5", 700, dtype=dtype)  # 256-row chunks: the last one partial
    expected = splits["gallery"].embeddings.astype(dtype)
    rows = np.array([699, 0, 256, 255, 3, 3, 512, 698])
    with SplitRows(FeatureFile(tmp_path / "f.h5"), "gallery") as gallery:
        assert gallery._chunk_offsets is not None  # read by offset, not through h5py
        got = gallery.embeddings(rows)
        assert got.dtype == np.dtype(dtype) and got.shape == (8, len(NAMES), DIM)
        np.testing.assert_array_equal(got, expected[rows])
        np.testing.assert_array_equal(gallery.visibility, splits["gallery"].visibility)
        with pytest.raises(DropError, match="rows 0..700 asked"):
            gallery.embeddings(np.array([0, 700]))


def test_rows_of_a_compressed_file_fall_back_to_h5py(tmp_path):
    clustered_file(tmp_path / "f.h5", 300, dtype="float32")
    with h5py.File(tmp_path / "f.h5", "r+") as f:
        data = f["gallery"]["embeddings"][()]
        del f["gallery"]["embeddings"]
        f["gallery"].create_dataset("embeddings", data=data, compression="gzip", chunks=(64, *data.shape[1:]))
    with SplitRows(FeatureFile(tmp_path / "f.h5"), "gallery") as gallery:
        assert gallery._chunk_offsets is None
        np.testing.assert_array_equal(gallery.embeddings(np.array([299, 5, 5])), data[[299, 5, 5]])


def test_the_index_vector_product_is_the_weighted_sum_of_cosines(tmp_path):
    splits = clustered_file(tmp_path / "f.h5", 40, dtype="float32")
    gallery = SplitRows(FeatureFile(tmp_path / "f.h5"), "gallery")
    index = GalleryIndex.new(gallery, make_setting("parts+foreground"), None, 40)
    q, g = splits["query"], splits["gallery"]
    product = index.vectors(q.embeddings, q.visibility) @ index.vectors(g.embeddings, g.visibility).T
    weights = q.visibility[:, None, 1:] * g.visibility[None, :, 1:]  # foreground 1 on both sides
    cosines = np.einsum("qmd,gmd->qgm", q.embeddings[:, 1:], g.embeddings[:, 1:])
    np.testing.assert_allclose(product, (weights * cosines).sum(axis=2), atol=1e-5)
    plain = GalleryIndex.new(gallery, make_setting("parts", False), None, 40)
    gallery.close()
    assert plain.vectors(q.embeddings, q.visibility).shape == (50, (len(NAMES) - 2) * DIM)
    np.testing.assert_allclose(  # visibility off: every row weighs 1
        plain.vectors(q.embeddings, q.visibility), q.embeddings[:, 2:].reshape(50, -1), atol=1e-7
    )


def exact_top(splits, setting, k=10):
    distances = setting_distances(splits["query"], splits["gallery"], NAMES, setting, device="cpu")
    return distances, np.argsort(distances, axis=1, kind="stable")[:, :k]


@pytest.mark.parametrize("setting", [make_setting("parts+foreground"), make_setting("parts", False)])
def test_indexed_search_re_scores_exactly_and_finds_the_exhaustive_top_10(tmp_path, setting):
    splits = clustered_file(tmp_path / "f.h5", 6000)
    result = build_index(tmp_path / "f.h5", distance=setting.distance, visibility=setting.visibility, progress=False)
    assert result.factory.startswith("PQ") and result.factory.endswith("fs") and result.images == 6000
    index = GalleryIndex.load(result.index)
    q = splits["query"]
    with SplitRows(FeatureFile(tmp_path / "f.h5"), "gallery") as gallery:
        found = GallerySearch(index, gallery)(q.embeddings, q.visibility, top=10, candidates=600)
    candidates = index.candidates(q.embeddings, q.visibility, 600)
    distances, top = exact_top(splits, setting)
    recall = np.mean([len(np.intersect1d(top[i], rows)) / 10 for i, (rows, _) in enumerate(found)])
    assert recall >= 0.98
    for i, (rows, dist) in enumerate(found):  # each candidate's exact distance, best first
        assert len(rows) == 10 and set(rows) <= set(candidates[i])
        np.testing.assert_allclose(dist, distances[i, rows], atol=1e-6)
        assert (np.diff(dist) >= 0).all()


def test_re_ranking_re_ranks_each_query_s_short_list(tmp_path):
    splits = clustered_file(tmp_path / "f.h5", 3000, queries=3)
    index = GalleryIndex.load(build_index(tmp_path / "f.h5", progress=False).index)
    q, g = splits["query"], splits["gallery"]
    with SplitRows(FeatureFile(tmp_path / "f.h5"), "gallery") as gallery:
        found = GallerySearch(index, gallery)(q.embeddings, q.visibility, top=20, candidates=100, rerank=Rerank())
    candidates = index.candidates(q.embeddings, q.visibility, 100)
    rows = slice(1, len(NAMES))
    for i, (got, dist) in enumerate(found):  # the matrix form over the query and its candidates
        short = np.sort(candidates[i])
        a = (q.embeddings[i : i + 1, rows], q.visibility[i : i + 1, rows])
        b = (g.embeddings[short][:, rows], g.visibility[short][:, rows])
        expected = re_rank(part_distance(*a, *b, "cpu"), part_distance(*a, *a, "cpu"), part_distance(*b, *b, "cpu"))[0]
        order = np.argsort(expected, kind="stable")[:20]
        np.testing.assert_array_equal(got, short[order])
        np.testing.assert_allclose(dist, expected[order], atol=1e-5)


def test_with_every_image_a_candidate_the_search_is_the_exhaustive_one(tmp_path):
    splits = clustered_file(tmp_path / "f.h5", 300, noise=2.0, dtype="float32")
    result = build_index(tmp_path / "f.h5", progress=False)
    assert result.factory == "Flat"  # a small gallery keeps its vectors whole
    distances, top = exact_top(splits, make_setting("parts+foreground"), k=300)
    q = splits["query"]
    with SplitRows(FeatureFile(tmp_path / "f.h5"), "gallery") as gallery:
        found = GallerySearch(GalleryIndex.load(result.index), gallery)(q.embeddings, q.visibility, top=300)
    for i, (rows, dist) in enumerate(found):
        np.testing.assert_array_equal(rows, top[i])  # ties in gallery order, as evaluate ranks
        np.testing.assert_allclose(dist, distances[i, rows], atol=1e-6)


def test_the_index_grows_without_training_again(tmp_path):
    import faiss

    path = tmp_path / "f.h5"
    clustered_file(path, 3000)
    first = build_index(path, upto=2900, progress=False)
    assert (first.images, first.added, first.trained) == (2900, 2900, True)

    def centroids(result):  # the quantizer's codebook (the index held while it is copied)
        index = GalleryIndex.load(result.index).index
        return faiss.vector_to_array(index.pq.centroids).copy()

    trained = centroids(first)
    grown = build_index(path, progress=False)
    assert (grown.images, grown.added, grown.trained) == (3000, 100, False)
    np.testing.assert_array_equal(centroids(grown), trained)
    assert build_index(path, progress=False).added == 0  # nothing new
    clustered_file(path, 3000)  # the same images written again: still the index's file
    assert build_index(path, progress=False).added == 0


def test_a_small_default_index_becomes_compact_when_it_grows_past_the_flat_size(tmp_path):
    path = tmp_path / "f.h5"
    clustered_file(path, 2100)
    assert build_index(path, upto=1000, progress=False).factory == "Flat"
    grown = build_index(path, progress=False)
    assert grown.factory.startswith("PQ") and grown.trained and grown.images == 2100


def test_index_bad_input_is_one_clear_error(tmp_path, monkeypatch):
    path, other = tmp_path / "f.h5", tmp_path / "other.h5"
    clustered_file(path, 400)
    clustered_file(other, 400, seed=1)  # the same paths, other embeddings
    built = build_index(path, progress=False)
    cases = [
        (lambda: build_index(other, out=built.index, progress=False), "built from another features file"),
        (lambda: build_index(path, distance="global", progress=False), "serves distance parts\\+foreground"),
        (lambda: build_index(path, factory="NotAnIndex", rebuild=True, progress=False), "faiss cannot make"),
        (lambda: GalleryIndex.load(path), "is not a drop index"),
        (lambda: GalleryIndex.load(tmp_path / "none.index"), "not found"),
    ]
    clustered_file(tmp_path / "small.h5", 300)
    cases.append((lambda: build_index(tmp_path / "small.h5", out=built.index, progress=False), "has only 300"))
    for call, message in cases:
        with pytest.raises(DropError, match=message):
            call()
    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(DropError, match=r"faiss is not installed.*drop-reid\[index\]"):
        build_index(path, rebuild=True, progress=False)


def test_drop_search_goes_through_the_index_and_says_so(untrained, synthetic_root, tmp_path, capsys):
    gallery = tmp_path / "g.h5"
    api.embed([synthetic_root / "synthetic" / "bounding_box_test"], model=untrained, out=gallery, progress=False)
    query = str(sorted((synthetic_root / "synthetic" / "query").glob("*.jpg"))[0])
    base = ["search", "--checkpoint", str(untrained), "--query", query, "--gallery", str(gallery), "--json"]
    code, out, err = run(capsys, [*base, "--out", str(tmp_path / "exact")])
    assert code == 0, err
    exhaustive = json.loads(out)
    assert exhaustive["index"] is None
    code, out, err = run(capsys, ["index", str(gallery), "--json"])
    assert code == 0, err
    built = json.loads(out)
    assert built["index"] == str(index_path(gallery)) and built["images"] == len(FeatureFile(gallery).paths("gallery"))
    code, out, err = run(capsys, [*base, "--out", str(tmp_path / "indexed"), "--candidates", "1000000"])
    assert code == 0, err
    indexed = json.loads(out)
    assert indexed["index"] == built["index"]
    for a, b in zip(indexed["queries"][0]["results"], exhaustive["queries"][0]["results"]):
        assert a["gallery"] == b["gallery"] and a["distance"] == pytest.approx(b["distance"], abs=1e-6)
    for extra, message in (
        (["--distance", "global"], "serves distance parts\\+foreground"),
        (["--exact", "--index", built["index"]], "contradict"),
        (["--candidates", "5", "--top", "10"], "at least --top"),
    ):
        code, out, err = run(capsys, [*base, "--out", str(tmp_path / "bad"), *extra])
        assert code != 0 and err.count("\n") == 1 and message.replace("\\", "") in err, err
    api.embed([synthetic_root / "synthetic" / "query"], model=untrained, out=gallery, progress=False)  # grown
    capsys.readouterr()
    code, out, err = run(capsys, [*base, "--out", str(tmp_path / "bad")])
    assert code != 0 and err.count("\n") == 1 and "new ones with `drop index" in err, err
    code, out, err = run(capsys, ["index", str(gallery), "--json"])
    assert code == 0 and not json.loads(out)["trained"], err
    code, out, err = run(capsys, [*base, "--out", str(tmp_path / "indexed")])
    assert code == 0, err


@pytest.mark.slow
def test_recall_and_exact_re_scoring_at_100000_crops(tmp_path):
    splits = clustered_file(tmp_path / "f.h5", 100_000, queries=100, noise=2.0, dim=512)
    result = build_index(tmp_path / "f.h5", progress=False)
    q = splits["query"]
    index = GalleryIndex.load(result.index)
    with SplitRows(FeatureFile(tmp_path / "f.h5"), "gallery") as gallery:
        found = GallerySearch(index, gallery)(q.embeddings, q.visibility, top=10)
        rescored = [
            part_distance(
                q.embeddings[i : i + 1, 1:],
                q.visibility[i : i + 1, 1:],
                gallery.embeddings(rows)[:, 1:],
                gallery.visibility[rows, 1:],
                device="cpu",
            )[0]
            for i, (rows, _) in enumerate(found)
        ]
    for (_, dist), expected in zip(found, rescored):
        np.testing.assert_allclose(dist, expected, atol=1e-6)
    _, top = exact_top(splits, make_setting("parts+foreground"))
    recall = np.mean([len(np.intersect1d(top[i], rows)) / 10 for i, (rows, _) in enumerate(found)])
    assert recall >= 0.98


def test_a_folder_gallery_s_index_grows_with_its_cache(untrained, synthetic_root, tmp_path, capsys):
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    images = sorted((synthetic_root / "synthetic" / "bounding_box_test").glob("*.jpg"))
    for image in images[:-3]:
        (gallery / image.name).write_bytes(image.read_bytes())
    query = str(images[-1])
    base = ["search", "--checkpoint", str(untrained), "--query", query, "--gallery", str(gallery), "--json"]
    code, out, err = run(capsys, [*base, "--out", str(tmp_path / "s")])
    assert code == 0 and json.loads(out)["index"] is None, err
    cache = next(tmp_path.glob("gallery.*.h5"))
    code, out, err = run(capsys, ["index", str(cache), "--json"])
    assert code == 0 and json.loads(out)["images"] == len(images) - 3, err
    for image in images[-3:]:  # new crops, the query among them
        (gallery / image.name).write_bytes(image.read_bytes())
    code, out, err = run(capsys, [*base, "--out", str(tmp_path / "s")])
    assert code == 0, err
    payload = json.loads(out)
    assert payload["index"] == str(index_path(cache))
    assert GalleryIndex.load(index_path(cache)).rows == len(images)  # grown, not rebuilt
    top = payload["queries"][0]["results"][0]
    assert top["gallery"].endswith(images[-1].name) and top["distance"] == pytest.approx(0.0, abs=1e-3)

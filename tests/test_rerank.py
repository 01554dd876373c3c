"""re_rank against a point-by-point transcription of the published numpy algorithm (Zhong et al.): the
benchmark's ``classic_re_rank``, the one reference both use."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.bench_evaluation import classic_re_rank
from drop_cli.errors import DropError
from drop_cli.evaluation import (
    check_re_rank_embeddings_memory,
    check_re_rank_memory,
    part_distance,
    re_rank,
    re_rank_embeddings,
    re_rank_embeddings_memory_bytes,
    re_rank_memory_bytes,
    re_ranked_blocks,
)
from drop_cli.evaluation import rerank as rerank_module
from drop_cli.evaluation.distance import RowSet
from drop_cli.evaluation.rerank import re_ranked_row_sets
from drop_cli.synthetic.embeddings import clustered_embeddings


def clustered_distances(seed, num_query=30, num_gallery=80, num_ids=12, dim=8, asymmetry=0.0):
    """Euclidean distances between noisy copies of identity centres (k-reciprocal sets are non-trivial)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_ids, dim))
    n = num_query + num_gallery
    points = centres[rng.integers(0, num_ids, n)] + 0.6 * rng.normal(size=(n, dim))
    dist = np.linalg.norm(points[:, None] - points[None], axis=2)
    dist *= 1 + asymmetry * rng.random(dist.shape)  # the original reads columns: an asymmetric input tells
    q, g = slice(0, num_query), slice(num_query, None)
    return dist[q, g], dist[q, q], dist[g, g]


@pytest.mark.parametrize(
    "seed, k1, k2, lambda_value, asymmetry",
    [
        (0, 20, 6, 0.3, 0.0),
        (1, 5, 1, 0.5, 0.0),  # no query expansion; round(5 / 2) = 2 (half to even)
        (2, 7, 3, 0.0, 0.0),  # pure Jaccard; round(7 / 2) = 4
        (3, 4, 9, 1.0, 0.0),  # k2 > k1 + 1; pure original distance
        (4, 12, 4, 0.3, 0.2),  # asymmetric distances
        (5, 150, 6, 0.3, 0.0),  # k1 + 1 above the number of points
    ],
)
def test_matches_published_algorithm(seed, k1, k2, lambda_value, asymmetry):
    q_g, q_q, g_g = clustered_distances(seed, asymmetry=asymmetry)
    expected = classic_re_rank(q_g, q_q, g_g, k1, k2, lambda_value)
    result = re_rank(q_g, q_q, g_g, k1=k1, k2=k2, lambda_value=lambda_value)
    assert result.dtype == np.float32 and result.shape == q_g.shape
    assert np.abs(result - expected).max() < 1e-5


def test_float32_inputs_and_blocks(monkeypatch):
    from drop_cli.evaluation import rerank

    q_g, q_q, g_g = (d.astype(np.float32) for d in clustered_distances(6, num_query=40, num_gallery=70))
    expected = classic_re_rank(q_g, q_q, g_g, 20, 6, 0.3)
    # Tiny blocks: several neighbour-search blocks, tiles and min-sum blocks.
    monkeypatch.setattr(rerank, "_BLOCK_VALUES", 7 * 110)
    monkeypatch.setattr(rerank, "_TILE_ROWS", 16)
    monkeypatch.setattr(rerank, "_BLOCK_PAIRS", 500)
    monkeypatch.setattr(rerank, "_BLOCK_QUERIES", 3)
    assert np.abs(re_rank(q_g, q_q, g_g) - expected).max() < 1e-5


@pytest.mark.parametrize(
    "seed, k1, k2, lambda_value, asymmetry", [(0, 20, 6, 0.3, 0.0), (4, 12, 4, 0.3, 0.2), (1, 5, 1, 0.5, 0.0)]
)
def test_gpu_path_matches_published_algorithm(monkeypatch, seed, k1, k2, lambda_value, asymmetry):
    """The GPU path's torch code, run on the CPU here (and on CUDA by the next test when there is one)."""
    from drop_cli.evaluation import rerank

    q_g, q_q, g_g = clustered_distances(seed, asymmetry=asymmetry)
    expected = classic_re_rank(q_g, q_q, g_g, k1, k2, lambda_value)
    monkeypatch.setattr(rerank, "_GPU_BLOCK_VALUES", 5 * 110)  # several neighbour and min-sum blocks
    result = rerank._re_rank_torch(q_g, q_q, g_g, k1, k2, lambda_value, torch.device("cpu"))
    assert result.dtype == np.float32 and result.shape == q_g.shape
    assert np.abs(result - expected).max() < 1e-5


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    q_g, q_q, g_g = (d.astype(np.float32) for d in clustered_distances(8, num_query=300, num_gallery=900))
    on_cpu = re_rank(q_g, q_q, g_g, device="cpu")
    assert np.abs(re_rank(q_g, q_q, g_g) - on_cpu).max() < 1e-5  # the default: CUDA


def test_bad_inputs_raise():
    q_g, q_q, g_g = clustered_distances(7, num_query=5, num_gallery=9)
    with pytest.raises(ValueError, match="shapes"):
        re_rank(q_g, q_q, g_g.T[:5])
    with pytest.raises(ValueError, match="k1"):
        re_rank(q_g, q_q, g_g, k1=0)
    with pytest.raises(ValueError, match="lambda_value"):
        re_rank(q_g, q_q, g_g, lambda_value=1.5)
    g_g = g_g.copy()
    g_g[2, 3] = np.nan
    with pytest.raises(DropError, match="NaN"):
        re_rank(q_g, q_q, g_g)


def test_memory_check():
    without_inputs = re_rank_memory_bytes(3368, 15913, include_inputs=False)
    assert re_rank_memory_bytes(3368, 15913) > without_inputs > 4 * 3368 * 15913  # more than the output
    check_re_rank_memory(30, 80)
    with pytest.raises(DropError, match="needs about .* GiB") as raised:
        check_re_rank_memory(10**6, 10**7)
    assert "evaluate_rank_chunked" in str(raised.value)


# ----------------------------------------------------------------------------- from embeddings


def _split_embeddings(num_query=24, num_gallery=70, seed=3):
    data = clustered_embeddings(num_query + num_gallery, 9, rows=5, dim=16, noise=1.5, seed=seed)
    data.visibility[0, 2:] = 0  # a query that shares no part with anything: UNSHARED_DISTANCE everywhere
    q, g = data.take(slice(0, num_query)), data.take(slice(num_query, None))
    return q.embeddings, q.visibility, g.embeddings, g.visibility


@pytest.mark.parametrize("k1, k2, lambda_value", [(20, 6, 0.3), (5, 1, 0.5), (7, 3, 0.0), (4, 9, 1.0), (150, 6, 0.3)])
def test_re_rank_embeddings_equals_re_rank_of_the_matrices(monkeypatch, k1, k2, lambda_value):
    # Small blocks: many neighbour blocks, pair chunks and cached query-gallery blocks.
    monkeypatch.setattr(rerank_module, "_EMBEDDING_BLOCK_VALUES", 7 * 94)  # 7 rows: blocks straddle nothing
    monkeypatch.setattr(rerank_module, "_PAIR_BLOCK_VALUES", 5 * 16 * 13)
    monkeypatch.setattr(rerank_module, "_BLOCK_QUERIES", 5)
    monkeypatch.setattr(rerank_module, "_LOOKUP_PAIRS", 97)
    q, qv, g, gv = _split_embeddings()
    expected = re_rank(
        part_distance(q, qv, g, gv), part_distance(q, qv, q, qv), part_distance(g, gv, g, gv), k1, k2, lambda_value
    )
    got = re_rank_embeddings(q, qv, g, gv, k1, k2, lambda_value, device="cpu")
    assert got.dtype == np.float32 and got.shape == (24, 70)
    assert np.abs(got - expected).max() <= 1e-6
    assert not np.allclose(got, part_distance(q, qv, g, gv), atol=1e-2)  # re-ranking changed the distances
    blocks = [(start, b.copy()) for start, b in re_ranked_blocks(q, qv, g, gv, k1, k2, lambda_value, device="cpu")]
    assert [start for start, _ in blocks] == list(range(0, 24, 5))
    np.testing.assert_array_equal(np.concatenate([b for _, b in blocks]), got)


def test_re_rank_embeddings_bad_input():
    q, qv, g, gv = _split_embeddings(4, 9)
    with pytest.raises(ValueError, match="same M and D"):
        re_rank_embeddings(q, qv, g[:, :3], gv[:, :3])
    with pytest.raises(ValueError, match="at least one query"):
        re_rank_embeddings(q[:0], qv[:0], g, gv)
    with pytest.raises(ValueError, match="k2"):
        re_rank_embeddings(q, qv, g, gv, k2=0)


def test_embeddings_memory_estimate_and_check(monkeypatch):
    streamed = re_rank_embeddings_memory_bytes(11659, 82161, 10, 512, held_output=False)
    held = re_rank_embeddings_memory_bytes(11659, 82161, 10, 512)
    assert held - streamed == 4 * 11659 * 82161  # the output
    assert streamed < 2**30  # MSMT17 streamed: the neighbour lists, V and blocks, not an [N, N] matrix
    monkeypatch.setattr(rerank_module, "_available_memory_bytes", lambda: 3 * 2**30)
    check_re_rank_embeddings_memory(11659, 82161, 10, 512, held_output=False)
    expected = f"re-ranking 11659 queries x 82161 gallery images needs about {held / 2**30:.1f} GiB of memory, 3.0 GiB"
    with pytest.raises(DropError, match=expected) as e:
        check_re_rank_embeddings_memory(11659, 82161, 10, 512)
    assert "re_ranked_blocks" in e.value.hint and "without --rerank" in e.value.hint
    monkeypatch.setattr(rerank_module, "_available_memory_bytes", lambda: 2**20)
    with pytest.raises(DropError) as e:
        re_rank_embeddings(*_split_embeddings(4, 9))
    assert "re_ranked_blocks" not in e.value.hint  # streaming would not fit either


def test_row_sets_re_ranked_together_equal_each_alone(monkeypatch):
    """The grid's form: the neighbour search shared by several distances (weighted or not, any rows)."""
    monkeypatch.setattr(rerank_module, "_EMBEDDING_BLOCK_VALUES", 3 * 7 * 94)  # 7 rows per block for 3 sets
    q, qv, g, gv = _split_embeddings()
    qv[:, :2], gv[:, :2] = 1, 1  # the scoring's weights: rows 0 and 1 always seen
    sets = [RowSet((1, 2, 3, 4), True), RowSet((2, 3, 4), False), RowSet((0,), True)]
    got = {i: np.zeros((24, 70), np.float32) for i in range(3)}
    for index, start, block in re_ranked_row_sets(q, qv, g, gv, sets, 7, 3, 0.3, device="cpu"):
        got[index][start : start + len(block)] = block
    for index, row_set in enumerate(sets):
        rows = list(row_set.rows)
        wq, wg = (w[:, rows] if row_set.visibility else np.ones_like(w[:, rows]) for w in (qv, gv))
        alone = re_rank_embeddings(q[:, rows], wq, g[:, rows], wg, 7, 3, 0.3, device="cpu")
        assert np.abs(got[index] - alone).max() <= 1e-6, row_set

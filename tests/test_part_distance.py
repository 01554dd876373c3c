"""part_distance against a pair-by-pair loop, its visibility semantics and its chunking."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from drop_cli.evaluation import UNSHARED_DISTANCE, part_distance
from drop_cli.evaluation.distance import _part_distance_torch, paired_part_distance


def oracle_part_distance(q_emb, q_vis, g_emb, g_vis):
    """Pair by pair: visibility-weighted mean of ||q_m - g_m||, None where no part is shared."""
    out = np.empty((len(q_emb), len(g_emb)), dtype=object)
    for i in range(len(q_emb)):
        for j in range(len(g_emb)):
            weight = q_vis[i].astype(np.float64) * g_vis[j]
            dist = np.linalg.norm(q_emb[i].astype(np.float64) - g_emb[j], axis=1)
            out[i, j] = float((weight * dist).sum() / weight.sum()) if weight.sum() > 0 else None
    return out


def unit_embeddings(rng, n, parts, dim):
    emb = rng.normal(size=(n, parts, dim))
    return (emb / np.linalg.norm(emb, axis=2, keepdims=True)).astype(np.float32)


def case(seed, num_query=13, num_gallery=29, parts=5, dim=16, soft=False):
    rng = np.random.default_rng(seed)
    q_emb, g_emb = unit_embeddings(rng, num_query, parts, dim), unit_embeddings(rng, num_gallery, parts, dim)
    g_emb[3] = q_emb[0]  # an identical pair: distance 0
    if soft:
        q_vis, g_vis = rng.random((num_query, parts)), rng.random((num_gallery, parts))
        q_vis[rng.random(q_vis.shape) < 0.3] = 0.0
    else:
        q_vis, g_vis = rng.random((num_query, parts)) < 0.6, rng.random((num_gallery, parts)) < 0.6
    q_vis[1] = 0  # a query without any visible part
    q_vis[0, 0] = g_vis[3, 0] = 1  # the identical pair shares a part
    return q_emb, q_vis, g_emb, g_vis


def assert_matches_oracle(result, expected):
    shared = np.not_equal(expected, None)  # an object array: None where no part is shared
    assert result.dtype == np.float32
    # Query 0 and gallery 3 are identical: sqrt(2 - 2 a.b) amplifies the float32 rounding near 0.
    assert expected[0, 3] == 0.0 and result[0, 3] < 2e-3
    shared[0, 3] = False
    np.testing.assert_allclose(result[shared], expected[shared].astype(np.float64), rtol=0, atol=1e-5)
    shared[0, 3] = True
    assert np.all(result[~shared] == UNSHARED_DISTANCE)
    assert result[~shared].size and result[~shared].min() > result[shared].max()


@pytest.mark.parametrize("soft", [False, True])
def test_matches_oracle(soft):
    inputs = case(0, soft=soft)
    assert_matches_oracle(part_distance(*inputs, device="cpu"), oracle_part_distance(*inputs))


def test_torch_path_matches_oracle():
    # The GPU code path, run on the CPU.
    inputs = case(1, soft=True)
    out = np.full((len(inputs[0]) + 3, len(inputs[2])), np.nan, np.float32)
    result = _part_distance_torch(*inputs, chunk_size=7, device=torch.device("cpu"), out=out[2:-1])
    assert np.shares_memory(result, out) and np.isnan(out[:2]).all() and np.isnan(out[-1]).all()
    assert_matches_oracle(result, oracle_part_distance(*inputs))


def test_writes_into_a_given_view_and_checks_it():
    inputs = case(2, soft=True)
    out = np.full((len(inputs[0]), len(inputs[2]) + 4), np.nan, np.float32)
    result = part_distance(*inputs, device="cpu", chunk_size=5, out=out[:, 4:])
    assert np.shares_memory(result, out) and np.isnan(out[:, :4]).all()
    assert_matches_oracle(result, oracle_part_distance(*inputs))
    with pytest.raises(ValueError, match="out must be a float32 array of shape"):
        part_distance(*inputs, device="cpu", out=out)


def test_paired_part_distance_is_the_diagonal():
    q_emb, q_vis, g_emb, g_vis = case(3, soft=True)
    n = min(len(q_emb), len(g_emb))
    pairs = paired_part_distance(q_emb[:n], q_vis[:n], g_emb[:n], g_vis[:n])
    expected = np.diag(part_distance(q_emb[:n], q_vis[:n], g_emb[:n], g_vis[:n], device="cpu"))
    assert pairs.dtype == np.float32 and UNSHARED_DISTANCE in pairs  # query 1 shares no part
    np.testing.assert_allclose(pairs, expected, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_oracle():
    inputs = case(3, soft=True)
    assert_matches_oracle(part_distance(*inputs), oracle_part_distance(*inputs))  # the default: CUDA


def test_visibility_semantics():
    rng = np.random.default_rng(2)
    q_emb, g_emb = unit_embeddings(rng, 1, 3, 8), unit_embeddings(rng, 3, 3, 8)
    part = np.linalg.norm(q_emb[0] - g_emb[0], axis=1)  # per-part distances to gallery 0
    q_vis = np.array([[1.0, 1.0, 0.0]])
    g_vis = np.array([[1.0, 1.0, 1.0], [0.0, 1.0, 1.0], [0.0, 0.0, 1.0]])
    g_emb[1] = g_emb[0]
    result = part_distance(q_emb, q_vis, g_emb, g_vis, device="cpu")
    assert result[0, 0] == pytest.approx((part[0] + part[1]) / 2, abs=1e-5)  # part 2 hidden in the query
    assert result[0, 1] == pytest.approx(part[1], abs=1e-5)  # part 0 hidden in the gallery image
    assert result[0, 2] == UNSHARED_DISTANCE  # parts 0-1 hidden in the gallery, 2 in the query
    soft = part_distance(q_emb, np.array([[0.5, 1.0, 0.0]]), g_emb[:1], g_vis[:1], device="cpu")
    assert soft[0, 0] == pytest.approx((0.5 * part[0] + part[1]) / 1.5, abs=1e-5)


def test_chunking_does_not_change_results():
    inputs = case(3, num_query=11, num_gallery=40)
    whole = part_distance(*inputs, device="cpu")
    for chunk_size in (1, 7, 40, 100):
        chunked = part_distance(*inputs, device="cpu", chunk_size=chunk_size)
        np.testing.assert_allclose(chunked, whole, rtol=0, atol=1e-6)
    # Query chunks give the same rows: the unshared distance is a constant, not the matrix maximum + 1.
    q_emb, q_vis, g_emb, g_vis = inputs
    first_rows = part_distance(q_emb[:4], q_vis[:4], g_emb, g_vis, device="cpu")
    np.testing.assert_allclose(first_rows, whole[:4], rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda q, qv, g, gv: (q[:, :3], qv, g, gv), "same M and D"),
        (lambda q, qv, g, gv: (q, qv[:, :3], g, gv), "visibility must be"),
        (lambda q, qv, g, gv: (q, qv * 2.0, g, gv), r"in \[0, 1\]"),
    ],
)
def test_bad_inputs_raise(change, message):
    q_emb, q_vis, g_emb, g_vis = case(4, soft=True)
    with pytest.raises(ValueError, match=message):
        part_distance(*change(q_emb, q_vis, g_emb, g_vis), device="cpu")

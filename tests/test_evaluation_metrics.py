"""evaluate_rank against a per-query loop oracle, a hand-worked example and its error cases."""

from __future__ import annotations

import numpy as np
import pytest

from drop_cli.errors import DropError
from drop_cli.evaluation import RankAccumulator, evaluate_rank, evaluate_rank_chunked, kept_in_ranking


def oracle_evaluate(distmat, q_pids, g_pids, q_camids, g_camids, max_rank):
    """Market-1501 evaluation one query at a time: stable sort, filter, read the match positions."""
    cmcs, aps, inps = [], [], []
    for i in range(len(q_pids)):
        ranking = [
            j
            for j in np.argsort(distmat[i], kind="stable")
            if g_pids[j] != -1 and not (g_pids[j] == q_pids[i] and g_camids[j] == q_camids[i])
        ]
        match_ranks = [rank for rank, j in enumerate(ranking, start=1) if g_pids[j] == q_pids[i]]
        if not match_ranks:
            continue
        cmcs.append([1.0 if match_ranks[0] <= k else 0.0 for k in range(1, max_rank + 1)])
        aps.append(np.mean([hits / rank for hits, rank in enumerate(match_ranks, start=1)]))
        inps.append(len(match_ranks) / match_ranks[-1])
    return np.mean(cmcs, axis=0), float(np.mean(aps)), float(np.mean(inps)), len(aps)


def random_case(seed, num_query, num_gallery, num_ids, num_cams, levels=None, dtype=np.float64):
    """Labels with junk (-1), distractors (0) and queries without matches; ties when ``levels`` is set."""
    rng = np.random.default_rng(seed)
    q_pids = rng.integers(1, num_ids + 3, num_query)  # ids above num_ids have no gallery image
    g_pids = rng.integers(-1, num_ids + 1, num_gallery)
    q_camids = rng.integers(0, num_cams, num_query)
    g_camids = rng.integers(0, num_cams, num_gallery)
    if levels is None:
        distmat = rng.random((num_query, num_gallery))
    else:
        distmat = rng.integers(0, levels, (num_query, num_gallery)) / levels
    return distmat.astype(dtype), q_pids, g_pids, q_camids, g_camids


def assert_matches_oracle(result, case, max_rank):
    cmc, mean_ap, mean_inp, num_valid = oracle_evaluate(*case, max_rank)
    assert result["num_valid_queries"] == num_valid
    np.testing.assert_allclose(result["cmc"], cmc, rtol=0, atol=1e-12)
    assert result["mAP"] == pytest.approx(mean_ap, abs=1e-12)
    assert result["mINP"] == pytest.approx(mean_inp, abs=1e-12)


@pytest.mark.parametrize(
    "seed, num_query, num_gallery, num_ids, num_cams, levels, dtype",
    [
        (0, 40, 300, 12, 3, None, np.float64),
        (1, 30, 500, 25, 6, None, np.float32),
        (2, 50, 200, 8, 2, 7, np.float64),  # heavy ties: 7 distinct distances
        (3, 20, 150, 5, 2, 2, np.float32),  # two distinct distances
        (4, 25, 120, 6, 3, 1, np.float64),  # every distance equal: pure gallery order
    ],
)
def test_matches_oracle(seed, num_query, num_gallery, num_ids, num_cams, levels, dtype):
    case = random_case(seed, num_query, num_gallery, num_ids, num_cams, levels, dtype)
    assert_matches_oracle(evaluate_rank(*case, max_rank=20), case, 20)


def test_hand_worked_example():
    # Gallery (index: pid, cam): g0 (1, 0), g1 (2, 1), g2 (1, 1), g3 (-1, 1) junk, g4 (0, 0) distractor, g5 (1, 2).
    g_pids = np.array([1, 2, 1, -1, 0, 1])
    g_camids = np.array([0, 1, 1, 1, 0, 2])
    q_pids = np.array([1, 2, 3])
    q_camids = np.array([0, 0, 1])
    distmat = np.array(
        [
            # q0 (pid 1, cam 0): g0 removed (same pid and camera), g3 junk. Kept ranking: g2 0.2 (match;
            # tied with g4, first by gallery order), g4 0.2, g1 0.5, g5 0.6 (match). Matches at ranks 1
            # and 4: AP = (1/1 + 2/4) / 2 = 0.75, INP = 2/4 = 0.5, first match at rank 1.
            [0.1, 0.5, 0.2, 0.05, 0.2, 0.6],
            # q1 (pid 2, cam 0): g3 junk. Kept ranking: g2 0.1, g0 0.2, g1 0.2 (match; tied with g0,
            # which comes first by gallery order), g5 0.4, g4 0.5. AP = 1/3, INP = 1/3, first at rank 3.
            [0.2, 0.2, 0.1, 0.9, 0.5, 0.4],
            # q2 (pid 3): no gallery image of pid 3, so it is skipped.
            [0.3, 0.3, 0.3, 0.3, 0.3, 0.3],
        ]
    )
    result = evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=5)
    assert result["num_valid_queries"] == 2
    np.testing.assert_allclose(result["cmc"], [0.5, 0.5, 1.0, 1.0, 1.0])
    assert result["mAP"] == pytest.approx((0.75 + 1 / 3) / 2)  # 13/24
    assert result["mINP"] == pytest.approx((0.5 + 1 / 3) / 2)  # 5/12


def test_protocol_rule():
    kept = kept_in_ranking(
        np.array([[1], [2]]), np.array([[0], [0]]), np.array([1, 1, -1, 0, 2]), np.array([0, 1, 0, 0, 0])
    )
    # Query pid 1 cam 0 loses g0 (same pid and camera) and g2 (junk); query pid 2 cam 0 loses g2 and g4.
    np.testing.assert_array_equal(kept, [[False, True, False, True, True], [True, True, False, True, False]])


def test_chunked_equals_in_memory():
    case = random_case(7, 53, 260, 10, 3, levels=11)
    full = evaluate_rank(*case, max_rank=10)
    distmat = case[0]
    calls = []

    def query_distances(start, stop):
        calls.append((start, stop))
        return distmat[start:stop]

    chunked = evaluate_rank_chunked(query_distances, *case[1:], max_rank=10, chunk_size=8)
    assert calls[0] == (0, 8) and calls[-1] == (48, 53) and len(calls) == 7
    assert chunked["num_valid_queries"] == full["num_valid_queries"]
    np.testing.assert_array_equal(chunked["cmc"], full["cmc"])
    assert chunked["mAP"] == pytest.approx(full["mAP"], abs=1e-12)
    assert chunked["mINP"] == pytest.approx(full["mINP"], abs=1e-12)


def test_work_blocks(monkeypatch):
    from drop_cli.evaluation import metrics

    case = random_case(9, 45, 220, 9, 3, levels=5)
    monkeypatch.setattr(metrics, "_WORK_PAIRS", 1000)  # blocks of 4 queries inside each call
    result = evaluate_rank_chunked(lambda start, stop: case[0][start:stop], *case[1:], max_rank=10, chunk_size=10)
    assert_matches_oracle(result, case, 10)


def test_large_spread_of_distances():
    # Outliers stretch the histogram range; matches must still be ranked exactly.
    distmat, *labels = random_case(8, 30, 400, 10, 3)
    distmat[:, ::17] = 1e9
    distmat[:, 5] = -1e9
    assert_matches_oracle(evaluate_rank(distmat, *labels, max_rank=10), (distmat, *labels), 10)


def test_no_valid_query_raises():
    g_pids, g_camids = np.array([1, 1, 2]), np.array([0, 1, 1])
    with pytest.raises(DropError, match="no query has a valid match"):  # no shared identity
        evaluate_rank(np.ones((2, 3)), np.array([3, 4]), g_pids, np.array([0, 0]), g_camids)
    with pytest.raises(DropError, match="no query has a valid match"):  # only same-camera matches
        evaluate_rank(np.ones((2, 3)), np.array([1, 2]), g_pids, np.array([2, 1]), np.array([2, 2, 1]))


@pytest.mark.parametrize(
    "distmat, q_pids, message",
    [
        (np.ones((2, 4)), np.array([1, 2]), "shape"),
        (np.full((2, 3), np.nan), np.array([1, 2]), "NaN or infinite"),
        (np.ones((2, 3)), np.array([1.0, 2.0]), "integers"),
        (np.ones(3), np.array([1, 2]), "2-D"),
    ],
)
def test_bad_input_raises(distmat, q_pids, message):
    with pytest.raises(DropError if message.startswith("NaN") else ValueError, match=message):
        evaluate_rank(distmat, q_pids, np.array([1, 2, 3]), np.array([0, 1]), np.array([1, 1, 1]))


def test_rank_accumulator_fed_uneven_blocks_equals_evaluate_rank():
    case = random_case(5, 41, 230, 10, 3, levels=7)
    full = evaluate_rank(*case, max_rank=10)
    ranking = RankAccumulator(*case[1:], max_rank=10)
    for start, stop in [(0, 1), (1, 17), (17, 18), (18, 41)]:
        ranking.add(start, case[0][start:stop].astype(np.float32))
    got = ranking.result()
    np.testing.assert_array_equal(got["cmc"], full["cmc"])
    assert got["mAP"] == pytest.approx(full["mAP"], abs=1e-12) and got["mINP"] == pytest.approx(full["mINP"], abs=1e-12)
    with pytest.raises(ValueError, match="outside the 41 queries"):
        ranking.add(40, case[0][:2])
    with pytest.raises(ValueError, match="expected"):
        ranking.add(0, case[0][:2, :-1])

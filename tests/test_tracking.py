"""drop as BoxMOT's appearance model, with the real BoxMOT package, on a generated sequence where
appearance is what decides (tests/sequence.py: two people turn back behind a pillar)."""

from __future__ import annotations

import numpy as np
import pytest

from drop_cli.errors import DropError
from drop_cli.tracking import BoxmotReid

from .sequence import make_sequence


class Blind:
    """An appearance model that sees nothing: every box gets the same vector."""

    embedding_dim = 8

    def get_features(self, boxes, image):
        return np.ones((len(boxes), 8), np.float32)


def track(tracker, sequence) -> dict[str, tuple[set[int], set[int]]]:
    """Per person, the track ids of its detections before and after the occlusion."""
    ids: dict[str, tuple[set[int], set[int]]] = {"a": (set(), set()), "b": (set(), set())}
    for t, (frame, detections, who) in enumerate(zip(sequence.frames, sequence.detections, sequence.who)):
        for row in tracker.update(detections, frame):
            person = who[int(row[7])]  # the detection index of the track
            if t < sequence.hidden[0]:
                ids[person][0].add(int(row[4]))
            elif t > sequence.hidden[1]:
                ids[person][1].add(int(row[4]))
    return ids


@pytest.mark.slow
@pytest.mark.parametrize("pids", [(2, 5), (1, 4)])
def test_strongsort_keeps_both_identities_through_the_occlusion_with_drop(checkpoint, pids):
    """The people are training identities of the session's small model (an integration test of the
    tracker backend, not a benchmark of generalisation)."""
    boxmot = pytest.importorskip("boxmot")
    sequence = make_sequence(num_ids=12, seed=3, pids=pids)
    assert not any(sequence.who[t] for t in range(sequence.hidden[0], sequence.hidden[1] + 1))
    blind = track(boxmot.StrongSort(reid_model=Blind()), sequence)
    assert blind["a"][1] == blind["b"][0] and blind["b"][1] == blind["a"][0], "motion alone swaps them"
    ours = track(boxmot.StrongSort(reid_model=BoxmotReid(checkpoint, device="cpu")), sequence)
    assert ours["a"][0] == ours["a"][1] and ours["b"][0] == ours["b"][1], ours
    assert len(ours["a"][0]) == 1 and ours["a"][0] != ours["b"][0]


def test_get_features_is_one_normalised_vector_per_box(untrained):
    reid = BoxmotReid(untrained, device="cpu")
    sequence = make_sequence(num_ids=12, seed=3, pids=(2, 5))
    frame, boxes = sequence.frames[0], sequence.detections[0][:, :4]
    vectors = reid.get_features(boxes, frame)
    assert vectors.shape == (2, reid.embedding_dim) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    crops = reid.crops(boxes, frame)
    assert np.array_equal(vectors, reid.model.embed(crops).single_vector("parts"))
    outside = reid.get_features(np.array([[-20, -20, 5, 9], [470, 190, 900, 900]]), frame)  # clipped, not empty
    assert outside.shape == (2, reid.embedding_dim) and np.isfinite(outside).all()
    assert reid.get_features(np.zeros((0, 4)), frame).shape == (0, reid.embedding_dim)
    with pytest.raises(DropError, match="BGR uint8"):
        reid.get_features(boxes, frame.astype(np.float32))
    with pytest.raises(DropError, match="unknown single-vector form"):
        BoxmotReid(reid.model, vector="mean")

"""The Market-1501 evaluation protocol: which gallery images take part in a query's ranking.

Every evaluator in drop applies this one rule, :func:`kept_in_ranking`:

* gallery images with pid -1 (``JUNK_PID``: junk, e.g. a badly cropped detection) are discarded
  for every query;
* gallery images showing the query's identity *and* taken by the query's camera are discarded for
  that query: finding them is too easy to count as re-identification;
* everything else stays, distractors (pid 0, ``DISTRACTOR_PID``: detections of no identity of
  interest) included. They can only push true matches down the ranking.

A *valid match* of a query is a kept gallery image with the query's pid; queries without one are
left out of the metrics.
"""

from __future__ import annotations

import numpy as np

JUNK_PID = -1
DISTRACTOR_PID = 0


def kept_in_ranking(
    q_pids: np.ndarray,
    q_camids: np.ndarray,
    g_pids: np.ndarray,
    g_camids: np.ndarray,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Whether each gallery image stays in each query's ranking (the rule of the module docstring).

    The arguments broadcast against each other like numpy operands, so the usual call passes the
    queries as a column and the gallery as a row.

    Args:
        q_pids: query identities, e.g. [Nq, 1].
        q_camids: query cameras, same shape as ``q_pids``.
        g_pids: gallery identities, e.g. [Ng] (or [1, Ng]).
        g_camids: gallery cameras, same shape as ``g_pids``.
        out: optional bool array of the broadcast shape to write into (no allocation then).

    Returns:
        Bool array of the broadcast shape, e.g. [Nq, Ng]: True where the gallery image is kept.
    """
    out = np.not_equal(g_camids, q_camids, out=out)
    out |= np.not_equal(g_pids, q_pids)
    out &= np.not_equal(g_pids, JUNK_PID)
    return out

"""Evaluation: pure functions over arrays (numpy in, numbers out): the Market-1501 protocol,
BPBreID's part distance, k-reciprocal re-ranking.

* :func:`part_distance`: query-gallery distances from part embeddings and visibility scores.
* :func:`evaluate_rank` / :func:`evaluate_rank_chunked`: CMC, mAP and mINP under the Market-1501
  protocol (the rule: :func:`kept_in_ranking`), in memory or one chunk of queries at a time
  (:class:`RankAccumulator` when the chunks come from a producer);
  :func:`average_precision`, each query's AP.
* :func:`re_rank`: k-reciprocal re-ranking (Zhong et al., CVPR 2017) of distance matrices;
  :func:`re_rank_embeddings` / :func:`re_ranked_blocks` the same from part embeddings without any
  [N, N] matrix (what ``drop evaluate --rerank`` runs); ``check_*_memory`` tell beforehand whether
  they fit in memory.
* :func:`parsing_iou` / :func:`parsing_miou`: predicted part maps against reference maps.
"""

from .distance import UNSHARED_DISTANCE, part_distance
from .metrics import RankAccumulator, average_precision, evaluate_rank, evaluate_rank_chunked
from .parsing import parsing_iou, parsing_miou
from .protocol import DISTRACTOR_PID, JUNK_PID, kept_in_ranking
from .rerank import (
    check_re_rank_embeddings_memory,
    check_re_rank_memory,
    re_rank,
    re_rank_embeddings,
    re_rank_embeddings_memory_bytes,
    re_rank_memory_bytes,
    re_ranked_blocks,
)

__all__ = [
    "DISTRACTOR_PID",
    "JUNK_PID",
    "UNSHARED_DISTANCE",
    "RankAccumulator",
    "average_precision",
    "check_re_rank_embeddings_memory",
    "check_re_rank_memory",
    "evaluate_rank",
    "evaluate_rank_chunked",
    "kept_in_ranking",
    "parsing_iou",
    "parsing_miou",
    "part_distance",
    "re_rank",
    "re_rank_embeddings",
    "re_rank_embeddings_memory_bytes",
    "re_rank_memory_bytes",
    "re_ranked_blocks",
]

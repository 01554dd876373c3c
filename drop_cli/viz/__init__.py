"""Pictures (PNG): label overlays, predicted parsing, ranking grids, embedding maps, training curves.

* :func:`draw_labels`: images with their pseudo labels overlaid, part legend, flagged images framed red.
* :func:`draw_parsing`: predicted parsing next to the pseudo label of the same image, per-part visibility.
* :func:`draw_ranking`: per query, its top-k gallery images under the evaluation protocol, framed
  green (same id) or red, with distances and the parts visible in both; :class:`ImageSet` holds one side.
* :func:`draw_search`: the same grid for a search, without identities (`drop search`).
* :func:`draw_embeddings`: t-SNE or PCA of one embedding row, coloured by identity.
* :func:`plot_training_curves`: loss terms, learning rate, rank-1 / mAP / mINP against epochs
  (:func:`read_history` reads a run's metrics.csv).

Image grids are composed as one numpy canvas (fast at hundreds of tiles); matplotlib (Agg backend,
imported only when a plot is drawn) draws the embedding map and the curves. Every PNG is written
under a temporary name, then renamed. Bad input raises :class:`~drop_cli.errors.DropError`; a
missing image becomes a grey placeholder and one warning.
"""

from .curves import plot_training_curves, read_history
from .embeddings import draw_embeddings
from .overlays import draw_labels, draw_parsing, overlay_parts
from .palette import part_colours
from .ranking import ImageSet, draw_ranking, draw_search

__all__ = [
    "ImageSet",
    "draw_embeddings",
    "draw_labels",
    "draw_parsing",
    "draw_ranking",
    "draw_search",
    "overlay_parts",
    "part_colours",
    "plot_training_curves",
    "read_history",
]

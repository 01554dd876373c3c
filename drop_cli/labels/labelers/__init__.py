"""Pseudo human-parsing labelers: one class per source of part maps, looked up by name.

Every labeler has ``name``, ``version`` and ``label(image_rgb, relpath) -> LabelResult``, and is
built from plain values (preset, label height and width, its own options) so that worker
processes can rebuild it from a :class:`LabelerSpec`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ...errors import lookup
from .bpbreid import BpbreidLabeler
from .pose import PoseLabeler
from .stripes import StripesLabeler
from .synthetic import SyntheticLabeler

LABELERS = {
    "pose": PoseLabeler,
    "bpbreid": BpbreidLabeler,
    "stripes": StripesLabeler,
    "synthetic": SyntheticLabeler,
}


@dataclass(frozen=True)
class LabelerSpec:
    """Everything needed to build a labeler in another process."""

    name: str
    preset: str
    height: int
    width: int
    options: dict = field(default_factory=dict)

    @property
    def version(self) -> str:
        return lookup(LABELERS, self.name, "labeler").version

    def build(self):
        return lookup(LABELERS, self.name, "labeler")(self.preset, self.height, self.width, **self.options)

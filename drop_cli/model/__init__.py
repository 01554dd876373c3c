"""DROP's network: backbone, ReID and parsing streams, parsing-guided pooling, embedding head."""

from __future__ import annotations

from .build import build_model, input_normalisation
from .drop_net import DropNet
from .output import DropOutput
from .pooling import POOLING

__all__ = ["POOLING", "DropNet", "DropOutput", "build_model", "input_normalisation"]

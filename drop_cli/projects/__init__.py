"""Projects on top of the core: studies that run the library's verbs (fast-reid's ``projects/``).

- ``ablation_study``: the baselines, DROP and each DROP component left out, over seeds (``drop ablation-study``).

Loaded on first use (PEP 562), so that the command line starts without importing torch.
"""

from __future__ import annotations

import importlib

_PROJECTS = ("ablation_study",)


def __getattr__(name: str):
    if name not in _PROJECTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return importlib.import_module(f".{name}", __name__)

"""Training curves: loss terms, learning rate, rank-1 and mAP against epochs."""
from __future__ import annotations

import os
from pathlib import Path

_NOT_LOSSES = {"epoch", "lr", "images_per_s", "memory", "rank1", "rank5", "rank10", "mAP", "mINP"}


def plot_training_curves(history: list[dict], path: Path) -> Path:
    """Draw one PNG with three panels from the per-epoch rows of metrics.csv."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_lr, ax_eval) = plt.subplots(1, 3, figsize=(15, 4), constrained_layout=True)
    for key in dict.fromkeys(k for r in history for k in r if k not in _NOT_LOSSES):
        ax_loss.plot(epochs, [r.get(key, float("nan")) for r in history], label=key,
                     linewidth=2.5 if key == "loss" else 1.2)
    ax_loss.set(title="loss terms (weighted)", xlabel="epoch")
    ax_loss.legend(fontsize=8)
    ax_lr.plot(epochs, [r["lr"] for r in history], color="tab:gray")
    ax_lr.set(title="learning rate", xlabel="epoch")
    evals = [r for r in history if "mAP" in r]
    for key, colour in (("rank1", "tab:blue"), ("mAP", "tab:orange"), ("mINP", "tab:green")):
        ax_eval.plot([r["epoch"] for r in evals], [100 * r[key] for r in evals], "o-", color=colour, label=key)
    ax_eval.set(title="query / gallery (%)", xlabel="epoch", ylim=(0, 100))
    ax_eval.legend(fontsize=8)
    for ax in (ax_loss, ax_lr, ax_eval):
        ax.grid(alpha=0.3)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
    return path

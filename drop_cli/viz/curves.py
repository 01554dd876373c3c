"""Training curves: loss terms, learning rate, rank-1 / mAP / mINP against epochs, from metrics.csv rows."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from .output import save_figure

FIGSIZE = (16.0, 4.6)  # inches; at DPI the picture is 1600 x 460 px
DPI = 100
_NOT_LOSSES = {"epoch", "lr", "images_per_s", "memory", "rank1", "rank5", "rank10", "rank20", "mAP", "mINP"}
_EVAL = (("rank1", "rank-1", "tab:blue"), ("mAP", "mAP", "tab:orange"), ("mINP", "mINP", "tab:green"))


def read_history(path: str | Path) -> list[dict]:
    """The rows of a run's metrics.csv as dicts of floats (empty cells, e.g. epochs without evaluation, left out)."""
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]


def _series(history: list[dict], key: str) -> tuple[list[float], list[float]]:
    """(epochs, values) of the rows that have a finite ``key``."""
    rows = [r for r in history if key in r and r[key] not in ("", None) and math.isfinite(float(r[key]))]
    return [float(r["epoch"]) for r in rows], [float(r[key]) for r in rows]


def plot_training_curves(history: list[dict], path: Path) -> Path:
    """Draw one PNG (`FIGSIZE` x `DPI`, 1600 x 460 px) with three panels from the per-epoch rows of metrics.csv.

    Panels: every weighted loss term and their sum (``loss``, thick black); the learning rate (log
    scale); rank-1, mAP and mINP in % on the epochs that were evaluated, the final mAP (the reported
    result: nothing is selected on the test split) starred. A
    dotted line marks the first epoch that used the parts memory bank (``memory`` = 1).

    Args:
        history: one dict per epoch with ``epoch``, ``lr``, the loss terms and, on evaluated epochs,
            ``rank1``, ``mAP``, ``mINP`` (fractions); values may be numbers or numeric strings.
        path: the PNG to write.
    """
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    dense = len(history) <= 40
    fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    ax_loss, ax_lr, ax_eval = fig.subplots(1, 3, sharex=True, gridspec_kw={"width_ratios": (1.35, 1, 1)})
    terms = [k for k in dict.fromkeys(k for r in history for k in r) if k not in _NOT_LOSSES and k != "loss"]
    colours = colormaps["tab10"]
    for i, key in enumerate(terms):
        ax_loss.plot(
            *_series(history, key), label=key, color=colours(i % 10), linewidth=1.4, marker="." if dense else None
        )
    ax_loss.plot(*_series(history, "loss"), label="loss (sum)", color="black", linewidth=2.6)
    memory_on = [e for e, v in zip(*_series(history, "memory")) if v >= 1]
    if memory_on:
        ax_loss.axvline(memory_on[0], color="gray", linestyle=":", linewidth=1.2)
        ax_loss.annotate(
            "memory bank on",
            (memory_on[0], 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(3, -12),
            textcoords="offset points",
            fontsize=8,
            color="gray",
        )
    ax_loss.set(title="loss terms (weighted)", xlabel="epoch", ylabel="loss")
    ax_loss.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)

    epochs, lr = _series(history, "lr")
    ax_lr.plot(epochs, lr, color="tab:purple", linewidth=1.8, marker="." if dense else None)
    if lr and min(lr) > 0:
        ax_lr.set_yscale("log")
    ax_lr.set(title="learning rate", xlabel="epoch")

    final_text = ""
    for key, label, colour in _EVAL:
        x, y = _series(history, key)
        if x:
            ax_eval.plot(x, [100 * v for v in y], "o-", color=colour, label=label, markersize=4, linewidth=1.8)
    x, y = _series(history, "mAP")
    top = 100.0
    if x:
        ax_eval.plot(
            x[-1],
            100 * y[-1],
            marker="*",
            color="tab:orange",
            markersize=15,
            markeredgecolor="black",
            label=f"final mAP {100 * y[-1]:.1f}",
        )
        final_text = f" · mAP {100 * y[-1]:.1f}% at epoch {x[-1]:g}"
        ax_eval.legend(fontsize=9, loc="upper left")
        highest = max(100 * v for key, _, _ in _EVAL for v in _series(history, key)[1])
        top = min(100.0, max(20.0, 10 * math.ceil(highest * 1.35 / 10)))  # room above the curves for the legend
    else:
        ax_eval.text(0.5, 0.5, "not evaluated yet", transform=ax_eval.transAxes, ha="center", color="gray")
    ax_eval.set(title="query / gallery (%)", xlabel="epoch", ylim=(0, top))
    for ax in (ax_loss, ax_lr, ax_eval):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    epochs = _series(history, "epoch")[1]
    span = f"epochs {epochs[0]:g} to {epochs[-1]:g}" if epochs else "no epoch yet"
    fig.suptitle(f"Training curves: {span}{final_text}", fontsize=13, x=0.01, ha="left", fontweight="bold")
    return save_figure(fig, path, DPI)

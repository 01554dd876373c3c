"""The training loop: one epoch at a time, evaluating, checkpointing and logging into the run folder.

Determinism: every random choice of an epoch (the PK batches, each draw's augmentation) is derived
from (seed, epoch) alone (``SeededBatches``), never from a DataLoader worker's state, and checkpoints
are written at epoch ends: a run resumed from ``last.pt`` continues exactly as the uninterrupted run
would, and the number of workers does not change the result (bit for bit on CPU). The workers persist
from epoch to epoch.

Reporting [base]: the reported result is the final epoch's (BPBreID and DROP report it); the
intermediate evaluations are in metrics.csv for the curves, and no checkpoint is selected on the
test split: a run keeps ``last.pt``, the model of the last finished epoch.

Distributed: under ``torchrun`` each rank trains on its share of every global batch with DDP (see
``train.step``); rank 0 alone evaluates and writes files.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from .. import _ui
from .._files import write_csv
from ..errors import DropError
from ..evaluation.scoring import Rerank, evaluate_setting, make_setting
from ..features import extract_features
from ..parts import row_names
from ..recipe import CompileMode
from ..viz.curves import plot_training_curves
from .checkpoint import save_checkpoint
from .schedule import lr_at
from .step import StepContext, compiled, train_step

METRICS_FILE = "metrics.csv"
# Steps between reads of the loss values on CUDA (every read waits for the GPU to finish).
LOSS_READ_EVERY = 25


@dataclass(frozen=True)
class LoopConfig:
    """Plain values the loop needs (resolved from the recipe by drop_cli.train.session)."""

    epochs: int
    lr: float
    warmup_epochs: int
    milestones: list[int]
    gamma: float
    eval_every: int
    workers: int
    parts: tuple[str, ...]  # the part names (rows of the embeddings, and the flip mirror)
    flip_tta: bool = False
    eval_distance: str = "parts+foreground"
    eval_rerank: bool = False
    rerank: Rerank = field(default_factory=Rerank)  # the re-ranking parameters, when eval_rerank
    part_embeddings: str = "pre_bnneck"
    compile: CompileMode = "off"  # the training forward under torch.compile (step.compiled)


@dataclass
class LoopState:
    epoch: int = -1  # last finished epoch
    history: list[dict] = field(default_factory=list)


def amp_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    """bf16 on CUDA when supported, else fp16; None (full precision) on CPU or when disabled."""
    if not enabled or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def evaluate(model, query_loader, gallery_loader, device, config: LoopConfig, dtype: torch.dtype | None) -> dict:
    """rank-1/5/10, mAP, mINP under the recipe's eval.distance (and eval.rerank), exactly as `drop evaluate`."""
    q, g = (
        extract_features(
            model, loader, device, config.flip_tta, dtype, parts=config.parts, part_embeddings=config.part_embeddings
        )
        for loader in (query_loader, gallery_loader)
    )
    row = evaluate_setting(
        q, g, row_names(config.parts), make_setting(config.eval_distance, True, config.eval_rerank), config.rerank
    )
    return {k: row[k] for k in ("rank1", "rank5", "rank10", "mAP", "mINP")}


class LossTally:
    """The epoch's loss terms, kept on the device and read back every ``read_every`` steps.

    Reading a value (``.item()``, ``if`` on a tensor) waits for the GPU; doing it every step would
    keep the CPU from queueing the next step's kernels while the GPU runs this one. A non-finite
    loss still stops training naming the first bad step and term, a few steps later at most.
    """

    def __init__(self, epoch: int, read_every: int):
        self.epoch, self.read_every = epoch, read_every
        self.names: list[str] = []
        self.pending: list[torch.Tensor] = []
        self.sums: torch.Tensor | None = None
        self.steps = 0  # steps read back

    def add(self, terms: dict[str, torch.Tensor], loss: torch.Tensor) -> None:
        self.names = self.names or [*terms, "loss"]
        self.pending.append(torch.stack([*(v.detach().float() for v in terms.values()), loss.detach().float()]))
        if len(self.pending) >= self.read_every:
            self.read()

    def read(self) -> None:
        """Read back the pending steps (one wait for the device); raise at the first non-finite one."""
        if not self.pending:
            return
        values = torch.stack(self.pending).double().cpu()
        self.pending = []
        finite = torch.isfinite(values)
        if not finite.all():
            row = int((~finite.all(dim=1)).nonzero()[0])
            bad = [name for name, ok in zip(self.names[:-1], finite[row].tolist()) if not ok]
            raise DropError(
                f"the loss became {values[row, -1].item()} at epoch {self.epoch + 1}, step "
                f"{self.steps + row + 1} (term {', '.join(bad) or 'total'}).",
                hint="last.pt holds the last good epoch; lower optim.lr or check the data.",
            )
        self.sums = values.sum(dim=0) if self.sums is None else self.sums + values.sum(dim=0)
        self.steps += len(values)

    def means(self) -> dict[str, float]:
        self.read()
        return {} if self.sums is None else dict(zip(self.names, (self.sums / self.steps).tolist()))


class MetricsLog:
    """metrics.csv (one row per epoch) and curves.png, rewritten whole from the checkpoint's history
    after every epoch (columns appear on evaluation epochs), each atomically. A resumed run writes them
    first, so a kill between the checkpoint and them leaves nothing missing."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / METRICS_FILE
        self.run_dir = run_dir

    def write(self, history: list[dict]) -> None:
        write_csv(self.path, history)
        plot_training_curves(history, self.run_dir / "curves.png")


def train_loop(
    model: torch.nn.Module,
    *,
    context: StepContext,
    config: LoopConfig,
    train_set,
    sampler,
    query_loader,
    gallery_loader,
    optimizer: torch.optim.Optimizer,
    state: LoopState,
    run_dir: Path | None,
    checkpoint_info: dict,
    log,
    progress: bool = True,
    rank: int = 0,
    world_size: int = 1,
) -> LoopState:
    """Train from ``state.epoch + 1`` to ``config.epochs``; returns the final state.

    ``checkpoint_info`` (the recipe, num_classes) is stored in every checkpoint beside the weights.
    """
    device = context.device
    core = model.module if hasattr(model, "module") else model
    step_model = compiled(model, config.compile)
    metrics_log = MetricsLog(run_dir) if run_dir is not None else None
    if metrics_log is not None and state.history:
        metrics_log.write(state.history)
    loader = DataLoader(
        train_set,
        batch_sampler=sampler,
        num_workers=config.workers,
        pin_memory=device.type == "cuda",
        persistent_workers=config.workers > 0,
    )
    for epoch in range(state.epoch + 1, config.epochs):
        lr = lr_at(epoch, config.lr, config.warmup_epochs, config.milestones, config.gamma)
        for group in optimizer.param_groups:
            group["lr"] = lr
        sampler.set_epoch(epoch)
        step_context = replace(context, use_memory=context.objective.use_memory(context.bank, epoch))
        tally = LossTally(epoch, LOSS_READ_EVERY if device.type == "cuda" else 1)
        images, start = 0, time.perf_counter()
        model.train()
        with _ui.progress_bar(
            f"epoch {epoch + 1}/{config.epochs}", len(sampler), unit="it", enabled=progress and rank == 0
        ) as advance:
            for batch in loader:
                terms = train_step(step_model, batch, step_context, optimizer)
                tally.add(terms, sum(terms.values()))
                images += len(batch["image"])
                advance(1)
        means = tally.means()
        seconds = time.perf_counter() - start
        row = {
            "epoch": epoch + 1,
            "lr": lr,
            **means,
            "images_per_s": images * world_size / max(seconds, 1e-9),
            "memory": int(step_context.use_memory),
        }
        is_eval = (epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs
        if is_eval and rank == 0:
            row.update(evaluate(core, query_loader, gallery_loader, device, config, context.autocast_dtype))
        state.epoch = epoch
        state.history.append(row)
        if rank == 0:
            log(_epoch_line(row))
            if run_dir is not None:
                save_checkpoint(
                    run_dir / "last.pt",
                    model=core.state_dict(),
                    optimizer=optimizer.state_dict(),
                    memory_bank=context.bank.state_dict() if context.bank is not None else None,
                    epoch=epoch,
                    metrics=row,
                    history=state.history,
                    **checkpoint_info,
                )
                metrics_log.write(state.history)
        if world_size > 1:
            dist.barrier()
    return state


def _epoch_line(row: dict) -> str:
    terms = " ".join(
        f"{k}={v:.3f}"
        for k, v in row.items()
        if k not in {"epoch", "lr", "images_per_s", "memory", "rank1", "rank5", "rank10", "mAP", "mINP"}
    )
    line = f"epoch {row['epoch']}: lr={row['lr']:.2e} {terms} ({row['images_per_s']:.1f} img/s)"
    if "mAP" in row:
        line += f" | rank-1 {100 * row['rank1']:.1f} mAP {100 * row['mAP']:.1f} mINP {100 * row['mINP']:.1f}"
    return line

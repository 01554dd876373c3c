"""One training step: forward, the objective, backward, the optimizer and the memory bank.

Under torchrun every rank holds its share of the global batch (``train.batch_size`` images split
evenly). BPBreID's authors trained DROP "on 2 GPUs as one batch", with DataParallel: each GPU
normalises its own share (batch norm per GPU) and the loss sees the whole batch. The same here with
DDP: the terms that compare images (``objective.BATCH_TERMS``) are computed on the all-gathered
global batch, this rank's share keeping its gradient, and weighted by the world size for the
backward pass, because DDP averages the ranks' gradients and each rank's pass reaches only its own
share; the per-image means (identity, parsing) stay on the share, whose averaged gradients are the
gradient of the global mean. The step's gradient is then the one-process gradient of the same 64
images (tested with 2 processes). ``train.sync_bn`` also makes batch norm see the global batch (CUDA).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..losses import PartsMemoryBank
from ..recipe import CompileMode
from .objective import BATCH_TERMS, Objective


def compiled(model: torch.nn.Module, mode: CompileMode) -> torch.nn.Module:
    """The module `train_step` calls: ``model`` itself (``off``) or ``model`` under torch.compile with
    that mode (``reduce-overhead`` also captures the compiled forward and backward as CUDA graphs).

    The compiled module shares ``model``'s parameters, so evaluation and checkpoints keep using ``model``.
    The model compiles without graph breaks (tested on the CPU).
    """
    if mode == "off":
        return model
    return torch.compile(model, mode=None if mode == "default" else mode)


@dataclass(frozen=True)
class GlobalBatch:
    """All ranks' shares of a batch tensor, concatenated in rank order; this rank's share keeps its gradient.

    With ``world_size`` 1 it returns the tensor itself.
    """

    rank: int = 0
    world_size: int = 1

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.world_size == 1:
            return tensor
        sent = tensor.detach().contiguous()
        if sent.dtype == torch.bool:  # not every backend gathers bool tensors
            sent = sent.to(torch.uint8)
        shares = [torch.empty_like(sent) for _ in range(self.world_size)]
        dist.all_gather(shares, sent)
        shares = [share.to(tensor.dtype) for share in shares]
        shares[self.rank] = tensor
        return torch.cat(shares)


@dataclass
class StepContext:
    """What every step of a run uses besides the batch."""

    objective: Objective
    device: torch.device
    autocast_dtype: torch.dtype | None = None  # None: full precision
    channels_last: bool = False  # on CUDA
    gather: GlobalBatch = GlobalBatch()
    bank: PartsMemoryBank | None = None
    use_memory: bool = False  # the memory regime this epoch
    scaler: torch.amp.GradScaler | None = None  # float16 autocast's loss scaling; None: none


def forward_backward(
    model: torch.nn.Module, batch: dict, context: StepContext
) -> tuple[dict[str, torch.Tensor], object]:
    """Forward this rank's share of a batch, compute the objective and back-propagate it.

    Args:
        model: the DropNet (or its DDP wrapper), in training mode.
        batch: ``image`` [n, 3, H, W], ``labels`` [n, H', W'], ``pid`` and ``index`` [n].
        context: the objective, the device and the run's switches.

    Returns:
        (the loss terms, true values: batch terms over the global batch; the model output). The
        gradients are in the parameters' ``.grad`` (accumulated: zero them first).
    """
    device = context.device
    images = batch["image"].to(device, non_blocking=True)
    if context.channels_last and device.type == "cuda":
        images = images.contiguous(memory_format=torch.channels_last)
    labels = batch["labels"].to(device, non_blocking=True)
    pids, indices = batch["pid"].to(device), batch["index"].to(device)
    dtype = context.autocast_dtype
    with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        out = model(images)
    terms = context.objective(out, labels, pids, indices, context.bank, context.use_memory, context.gather)
    world = context.gather.world_size
    loss = sum(value * (world if name in BATCH_TERMS else 1) for name, value in terms.items())
    (context.scaler.scale(loss) if context.scaler is not None else loss).backward()
    return terms, out


def train_step(
    model: torch.nn.Module, batch: dict, context: StepContext, optimizer: torch.optim.Optimizer
) -> dict[str, torch.Tensor]:
    """One optimisation step on this rank's share of a batch; the memory bank takes the global batch.

    Returns:
        The loss terms (tensors on the device; their sum is the loss).
    """
    optimizer.zero_grad(set_to_none=True)
    terms, out = forward_backward(model, batch, context)
    if context.scaler is not None:
        context.scaler.step(optimizer)
        context.scaler.update()
    else:
        optimizer.step()
    if context.bank is not None:
        gather = context.gather
        context.bank.update(
            gather(batch["index"].to(context.device)),
            gather(out.parts.detach().float()),
            gather(out.visibility),
            gather(batch["pid"].to(context.device)),
        )
    return terms

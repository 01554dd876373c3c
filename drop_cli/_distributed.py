"""The torchrun process group every multi-process command joins (training, extraction).

torchrun sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; without it a command is one process of
rank 0 and nothing is started. NCCL where CUDA is available, else gloo (CPU-only machines, tests).
torch is imported on first use: the terminal output (``_ui``) asks :func:`is_main_process`, and the
command line starts without torch.
"""

from __future__ import annotations

import os


def is_main_process() -> bool:
    """True in a single process and in torchrun's rank 0: the process that reports."""
    return int(os.environ.get("RANK", "0")) == 0


def local_rank() -> int:
    """This process's GPU index on its node (0 without torchrun)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def process_group() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; starts the process group."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return 0, 1, 0
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world_size, local_rank()


def barrier() -> None:
    """Wait for every process of the group (nothing to wait for in a single process)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()

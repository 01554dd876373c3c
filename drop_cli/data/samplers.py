"""PK batches: P identities x K images each, the batch the triplet losses need; and a seed per draw."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

from ..errors import DropError


class PKBatchSampler(Sampler[list[int]]):
    """Yields this rank's share of global batches of ``batch_size`` indices, ``num_instances`` per identity.

    Every identity's images are shuffled and cut into groups of K (identities with fewer than K
    images are filled up by drawing with replacement); batches take P = batch_size / K groups of
    distinct identities until fewer than P identities have groups left. The order depends only on
    (seed, epoch), so a resumed run sees the same batches. With ``world_size`` > 1 every global batch
    is split evenly: rank r takes its r-th slice (``share``), so the ranks together train on exactly
    the batches of a one-process run [base: BPBreID's DataParallel splits each batch over the GPUs].
    """

    def __init__(
        self,
        pids: Sequence[int],
        batch_size: int,
        num_instances: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        if num_instances < 1 or batch_size % num_instances:
            raise DropError(
                f"train.batch_size ({batch_size}) must be a multiple of data.num_instances ({num_instances}).",
                hint="E.g. batch_size 64 with num_instances 4.",
            )
        if batch_size % world_size:
            raise DropError(
                f"train.batch_size ({batch_size}) is the global batch: it must split evenly over the "
                f"{world_size} processes.",
                hint=f"Use a multiple of {world_size}, e.g. 64.",
            )
        self.share = batch_size // world_size
        self.num_ids_per_batch = batch_size // num_instances
        self.num_instances = num_instances
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch = 0
        by_pid: dict[int, list[int]] = defaultdict(list)
        for index, pid in enumerate(pids):
            by_pid[int(pid)].append(index)
        self.by_pid = {pid: np.array(idx) for pid, idx in sorted(by_pid.items())}
        if len(self.by_pid) < self.num_ids_per_batch:
            raise DropError(
                f"the training set has {len(self.by_pid)} identities, fewer than the "
                f"{self.num_ids_per_batch} a batch needs.",
                hint="Lower train.batch_size or raise data.num_instances.",
            )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def global_batches(self) -> list[list[int]]:
        """The epoch's batches over all ranks, in order."""
        rng = np.random.default_rng([self.seed, self.epoch])
        k = self.num_instances
        groups: dict[int, list[np.ndarray]] = {}
        for pid, idx in self.by_pid.items():
            idx = rng.permutation(idx) if len(idx) >= k else rng.choice(idx, size=k, replace=True)
            groups[pid] = [idx[i : i + k] for i in range(0, len(idx) - k + 1, k)]
        batches = []
        available = [pid for pid in groups if groups[pid]]
        while len(available) >= self.num_ids_per_batch:
            chosen = rng.choice(available, size=self.num_ids_per_batch, replace=False)
            batches.append([int(i) for pid in chosen for i in groups[int(pid)].pop()])
            available = [pid for pid in available if groups[pid]]
        return batches

    def shares(self) -> Iterator[tuple[list[int], slice]]:
        """(global batch, this rank's slice of it), in order."""
        mine = slice(self.rank * self.share, (self.rank + 1) * self.share)
        for batch in self.global_batches():
            yield batch, mine

    def __iter__(self) -> Iterator[list[int]]:
        return (batch[mine] for batch, mine in self.shares())

    def __len__(self) -> int:
        return len(self.global_batches())


class SeededBatches(Sampler[list[tuple[int, int]]]):
    """The batches of a ``PKBatchSampler``, each index paired with its own augmentation seed.

    A draw's seed depends only on (seed, epoch, global batch number, position in the global batch),
    so its augmentation is the same whichever DataLoader worker loads it and however many processes
    share the batch: a run gives the same images with any number of workers (persistent or not) or
    GPUs, and a resumed epoch repeats exactly. ``ReidImages`` applies the seed to its transform.
    """

    def __init__(self, batches: PKBatchSampler):
        self.batches = batches

    def set_epoch(self, epoch: int) -> None:
        self.batches.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        b = self.batches
        for number, (batch, mine) in enumerate(b.shares()):
            seeds = np.random.SeedSequence([b.seed, b.epoch, number]).generate_state(len(batch))
            yield [(index, int(seed)) for index, seed in zip(batch[mine], seeds[mine])]

    def __len__(self) -> int:
        return len(self.batches)

"""Losses on hand-made tiny batches: torch references, slow loop oracles and known answers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from drop_cli.losses import (
    PartsMemoryBank,
    batch_hard_triplet_loss,
    identity_loss,
    memory_ready,
    parsing_loss,
    part_averaged_triplet_loss,
    pct_loss,
)
from drop_cli.losses.parsing import smoothed_parsing_target

PIDS = torch.tensor([0, 0, 1, 1, 2, 2, 3])  # identity 3 has a single image: an anchor without positive


def oracle_batch_hard(dist: list[list[float | None]], pids: list[int], margin: float) -> float:
    """Loop batch-hard triplet; ``dist[a][j]`` is None when the pair is not comparable."""
    losses = []
    for a in range(len(pids)):
        pos = [dist[a][j] for j in range(len(pids)) if j != a and pids[j] == pids[a] and dist[a][j] is not None]
        neg = [dist[a][j] for j in range(len(pids)) if pids[j] != pids[a] and dist[a][j] is not None]
        if pos and neg:
            losses.append(max(0.0, max(pos) - min(neg) + margin))
    return sum(losses) / len(losses) if losses else 0.0


def oracle_part_averaged(parts: torch.Tensor, vis: torch.Tensor, pids: torch.Tensor, margin: float) -> float:
    n, k, _ = parts.shape
    dist: list[list[float | None]] = [[None] * n for _ in range(n)]
    for i in range(n):
        for j in range(n):
            shared = [(parts[i, p] - parts[j, p]).norm().item() for p in range(k) if vis[i, p] and vis[j, p]]
            dist[i][j] = sum(shared) / len(shared) if shared else None
    return oracle_batch_hard(dist, pids.tolist(), margin)


def oracle_pct(
    parts: torch.Tensor,
    vis: torch.Tensor,
    pids: torch.Tensor,
    indices: torch.Tensor,
    bank: PartsMemoryBank | None,
    margin: float,
    compact_weight: float,
    memory_positives: bool = False,
    normalize: bool = True,
) -> tuple[float, float]:
    """Loop version of pct_loss: per part, candidates are the other batch images and the memory (as
    negatives only, unless ``memory_positives``)."""
    z = F.normalize(parts, dim=-1) if normalize else parts
    hinges, spreads = [], []
    for p in range(parts.shape[1]):
        for a in range(len(pids)):
            if not vis[a, p]:
                continue
            cands = [(z[j, p], pids[j].item()) for j in range(len(pids)) if j != a and vis[j, p]]
            if bank is not None:
                cands += [
                    (bank.memory[m, p], bank.pids[m].item())
                    for m in range(len(bank.pids))
                    if bank.filled[m, p]
                    and m != indices[a]
                    and (memory_positives or bank.pids[m].item() != pids[a].item())
                ]
            pos = [(e - z[a, p]).norm().item() for e, q in cands if q == pids[a]]
            neg = [(e - z[a, p]).norm().item() for e, q in cands if q != pids[a]]
            if pos and neg:
                hinges.append(max(0.0, max(pos) - min(neg) + margin))
            if pos:
                members = [z[a, p]] + [e for e, q in cands if q == pids[a]]
                centre = torch.stack(members).mean(0)
                spreads.append((z[a, p] - centre).pow(2).sum().item())

    def mean(xs):
        return sum(xs) / len(xs) if xs else 0.0

    return mean(hinges), compact_weight * mean(spreads)


def random_batch(seed: int, n: int = 7, k: int = 3, d: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    parts = torch.randn(n, k, d, generator=gen)
    vis = torch.rand(n, k, generator=gen) > 0.3
    vis[0] = torch.tensor([True, False, False])  # images 0 and 1 share no visible part
    vis[1] = torch.tensor([False, True, False])
    return parts, vis


# --- identity ---------------------------------------------------------------------------------


def test_identity_loss_is_label_smoothed_cross_entropy():
    gen = torch.Generator().manual_seed(0)
    logits = {name: torch.randn(7, 5, generator=gen) for name in ("global", "foreground", "parts")}
    losses = identity_loss(logits, PIDS, label_smoothing=0.1)
    assert losses.keys() == logits.keys()
    for name, head in logits.items():
        torch.testing.assert_close(losses[name], F.cross_entropy(head, PIDS, label_smoothing=0.1))
    assert identity_loss({}, PIDS) == {}


# --- triplets ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batch_hard_triplet_matches_loop_oracle(seed):
    emb = torch.randn(7, 4, generator=torch.Generator().manual_seed(seed))
    dist = [[(emb[i] - emb[j]).norm().item() for j in range(7)] for i in range(7)]
    expected = oracle_batch_hard(dist, PIDS.tolist(), 0.3)
    assert batch_hard_triplet_loss(emb, PIDS, margin=0.3).item() == pytest.approx(expected, abs=1e-5)


def test_batch_hard_triplet_known_answer():
    emb = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0], [1.0, 0.0]])
    pids = torch.tensor([0, 0, 1, 1])
    # Anchors: 0: 3 - 1 + 0.3; 1: 3 - 2 + 0.3; 2: dp=|(0,4)-(1,0)|=sqrt(17), dn=4; 3: sqrt(17) - 1 + 0.3.
    expected = (2.3 + 1.3 + max(0.0, 17**0.5 - 4 + 0.3) + 17**0.5 - 0.7) / 4
    assert batch_hard_triplet_loss(emb, pids, 0.3).item() == pytest.approx(expected, abs=1e-5)


def test_triplet_without_valid_anchor_is_zero_with_graph():
    emb = torch.randn(4, 3, requires_grad=True)
    loss = batch_hard_triplet_loss(emb, torch.zeros(4, dtype=torch.long))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(emb.grad, torch.zeros_like(emb))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_part_averaged_triplet_matches_loop_oracle(seed):
    parts, vis = random_batch(seed)
    expected = oracle_part_averaged(parts, vis, PIDS, 0.3)
    got = part_averaged_triplet_loss(parts, vis, PIDS, margin=0.3)
    assert got.item() == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("seed", [0, 1])
def test_part_averaged_triplet_without_visibility_averages_every_part(seed):
    """BPBreID trains it this way (mask_filtering_training: False): the mean over all K parts."""
    parts, vis = random_batch(seed)
    got = part_averaged_triplet_loss(parts, None, PIDS, margin=0.3)
    everything = torch.ones_like(vis)
    assert got.item() == pytest.approx(oracle_part_averaged(parts, everything, PIDS, 0.3), abs=1e-5)
    assert got.item() != pytest.approx(part_averaged_triplet_loss(parts, vis, PIDS).item(), abs=1e-4)


def test_part_averaged_triplet_ignores_invisible_parts():
    parts, vis = random_batch(3)
    before = part_averaged_triplet_loss(parts, vis, PIDS)
    moved = parts.clone()
    moved[~vis] = 100.0 * torch.randn(int((~vis).sum()), parts.shape[-1])
    torch.testing.assert_close(part_averaged_triplet_loss(moved, vis, PIDS), before)


def test_part_averaged_triplet_gradients_skip_invisible_parts():
    parts, vis = random_batch(4)
    parts.requires_grad_(True)
    part_averaged_triplet_loss(parts, vis, PIDS).backward()
    assert torch.all(parts.grad[~vis] == 0)
    assert parts.grad[vis].abs().sum() > 0


# --- memory bank ------------------------------------------------------------------------------


def test_memory_bank_first_write_momentum_and_visibility():
    bank = PartsMemoryBank(num_images=5, num_parts=2, dim=3, momentum=0.5)
    assert bank.fill_ratio == 0.0
    first = torch.tensor([[[3.0, 0, 0], [0, 2.0, 0]], [[0, 0, 5.0], [1.0, 1.0, 0]]])
    bank.update(torch.tensor([1, 3]), first, torch.tensor([[True, False], [True, True]]), torch.tensor([7, 8]))
    torch.testing.assert_close(bank.memory[1, 0], torch.tensor([1.0, 0, 0]))  # first write: normalised
    torch.testing.assert_close(bank.memory[1, 1], torch.zeros(3))  # invisible: not written
    torch.testing.assert_close(bank.memory[3], F.normalize(first[1], dim=-1))
    assert bank.filled.tolist() == [[False, False], [True, False], [False, False], [True, True], [False, False]]
    assert bank.pids.tolist() == [-1, 7, -1, 8, -1]
    assert bank.fill_ratio == pytest.approx(2 / 5)

    second = torch.tensor([[[0, 4.0, 0], [0, 0, 1.0]], [[0, 0, 2.0], [0, 0, 1.0]]])
    bank.update(torch.tensor([1, 3]), second, torch.tensor([[True, True], [False, True]]), torch.tensor([7, 8]))
    torch.testing.assert_close(bank.memory[1, 0], F.normalize(torch.tensor([0.5, 0.5, 0]), dim=0))  # blend
    torch.testing.assert_close(bank.memory[1, 1], torch.tensor([0, 0, 1.0]))  # first write of that part
    torch.testing.assert_close(bank.memory[3, 0], torch.tensor([0, 0, 1.0]))  # invisible: kept
    blended = 0.5 * F.normalize(torch.tensor([1.0, 1.0, 0]), dim=0) + 0.5 * torch.tensor([0, 0, 1.0])
    torch.testing.assert_close(bank.memory[3, 1], F.normalize(blended, dim=0))
    torch.testing.assert_close(bank.memory.norm(dim=-1)[bank.filled], torch.ones(4))


def test_memory_bank_state_dict_round_trip_and_no_grad():
    bank = PartsMemoryBank(4, 2, 3)
    parts = torch.randn(2, 2, 3, requires_grad=True)
    bank.update(torch.tensor([0, 2]), parts, torch.tensor([[True, False], [True, True]]), torch.tensor([5, 6]))
    assert not bank.memory.requires_grad
    assert set(bank.state_dict()) == {"memory", "filled", "pids"}
    restored = PartsMemoryBank(4, 2, 3)
    restored.load_state_dict(bank.state_dict())
    for name in ("memory", "filled", "pids"):
        assert torch.equal(getattr(restored, name), getattr(bank, name))
    assert memory_ready(restored, epoch=10, start_epoch=10, min_fill=0.5)
    assert not memory_ready(restored, epoch=9, start_epoch=10, min_fill=0.5)
    assert not memory_ready(restored, epoch=10, start_epoch=10, min_fill=0.9)


# --- PCT --------------------------------------------------------------------------------------


def filled_bank(seed: int, num_images: int = 9, normalize: bool = True) -> PartsMemoryBank:
    """A bank whose slots 0..6 hold other views of the batch images and 7..8 two extra identities."""
    gen = torch.Generator().manual_seed(seed)
    bank = PartsMemoryBank(num_images, 3, 4, normalize=normalize)
    vis = torch.rand(num_images, 3, generator=gen) > 0.3
    pids = torch.cat([PIDS, torch.tensor([1, 9])])
    bank.update(torch.arange(num_images), torch.randn(num_images, 3, 4, generator=gen), vis, pids)
    return bank


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("with_bank", [False, True])
@pytest.mark.parametrize("memory_positives", [False, True])
@pytest.mark.parametrize("normalize", [True, False])
def test_pct_matches_loop_oracle(seed, with_bank, memory_positives, normalize):
    parts, vis = random_batch(seed)
    indices = torch.arange(7)
    bank = filled_bank(seed + 10, normalize=normalize) if with_bank else None
    got = pct_loss(
        parts,
        vis,
        PIDS,
        indices,
        bank,
        margin=0.3,
        compact_weight=0.5,
        normalize=normalize,
        memory_positives=memory_positives,
    )
    triplet, compact = oracle_pct(parts, vis, PIDS, indices, bank, 0.3, 0.5, memory_positives, normalize)
    assert got["pct_triplet"].item() == pytest.approx(triplet, abs=1e-5)
    assert got["pct_compact"].item() == pytest.approx(compact, abs=1e-5)


def test_memory_bank_without_normalisation_blends_raw_embeddings():
    bank = PartsMemoryBank(num_images=2, num_parts=1, dim=2, momentum=0.5, normalize=False)
    visible = torch.ones(1, 1, dtype=torch.bool)
    bank.update(torch.tensor([0]), torch.tensor([[[3.0, 4.0]]]), visible, torch.tensor([7]))
    bank.update(torch.tensor([0]), torch.tensor([[[1.0, 0.0]]]), visible, torch.tensor([7]))
    assert bank.memory[0, 0].tolist() == [2.0, 2.0]  # 0.5 * (3, 4) + 0.5 * (1, 0), no normalisation


def test_pct_without_memory_ignores_the_bank():
    parts, vis = random_batch(5)
    alone = pct_loss(parts, vis, PIDS, torch.arange(7), None)
    switched_off = pct_loss(parts, vis, PIDS, torch.arange(7), filled_bank(5), use_memory=False)
    for name in alone:
        torch.testing.assert_close(switched_off[name], alone[name])


def test_pct_memory_hard_negative_raises_loss():
    parts = torch.tensor([[[1.0, 0.0]], [[0.8, 0.6]], [[-1.0, 0.0]], [[-0.8, -0.6]]])
    vis = torch.ones(4, 1, dtype=torch.bool)
    pids, indices = torch.tensor([0, 0, 1, 1]), torch.arange(4)
    bank = PartsMemoryBank(6, 1, 2)
    bank.update(torch.tensor([5]), torch.tensor([[[1.0, 0.05]]]), torch.ones(1, 1, dtype=torch.bool), torch.tensor([2]))
    without = pct_loss(parts, vis, pids, indices, bank, use_memory=False)["pct_triplet"]
    with_memory = pct_loss(parts, vis, pids, indices, bank)["pct_triplet"]
    assert without.item() == 0.0  # identities are far apart in the batch
    assert with_memory.item() > 0.1


def test_pct_excludes_the_anchors_own_memory_slot():
    """With memory positives: one image per identity, so each anchor's only same-identity slot is its own."""
    parts = torch.randn(3, 2, 4, generator=torch.Generator().manual_seed(6))
    vis = torch.ones(3, 2, dtype=torch.bool)
    pids, indices = torch.tensor([0, 1, 2]), torch.tensor([5, 0, 3])
    bank = PartsMemoryBank(6, 2, 4)
    bank.update(indices, -parts, vis, pids)  # the opposite point: the hardest possible positive
    losses = pct_loss(parts, vis, pids, indices, bank, memory_positives=True)
    assert losses["pct_triplet"].item() == 0.0
    assert losses["pct_compact"].item() == 0.0
    # Claiming other indices, each anchor now sees its opposite point as an ordinary positive.
    shifted = pct_loss(parts, vis, pids, torch.tensor([0, 3, 5]), bank, memory_positives=True)
    assert shifted["pct_triplet"].item() > 0.5
    assert shifted["pct_compact"].item() == pytest.approx(0.5)  # centre 0: weight 0.5 x |z|^2
    negatives_only = pct_loss(parts, vis, pids, torch.tensor([0, 3, 5]), bank)  # the default [paper]
    assert negatives_only["pct_triplet"].item() == 0.0 and negatives_only["pct_compact"].item() == 0.0


def test_pct_compactness_is_zero_when_an_identity_coincides():
    direction = torch.tensor([[1.0, 2.0, 0.0], [0.0, 1.0, 1.0]])
    parts = torch.stack([direction, 3 * direction, -direction, -2 * direction])  # scale is normalised away
    vis = torch.tensor([[True, True], [True, False], [True, True], [False, True]])
    pids, indices = torch.tensor([0, 0, 1, 1]), torch.arange(4)
    assert pct_loss(parts, vis, pids, indices, None)["pct_compact"].item() == pytest.approx(0.0, abs=1e-6)
    bank = PartsMemoryBank(6, 2, 3)
    all_visible = torch.ones(2, 2, dtype=torch.bool)
    bank.update(torch.tensor([4, 5]), parts[[0, 2]] * 5, all_visible, torch.tensor([0, 1]))
    assert pct_loss(parts, vis, pids, indices, bank, memory_positives=True)["pct_compact"].item() == pytest.approx(
        0.0, abs=1e-6
    )
    stray = torch.tensor([[[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]])  # identity 1 seen elsewhere in memory
    bank.update(torch.tensor([5]), stray, all_visible[:1], torch.tensor([1]))
    assert pct_loss(parts, vis, pids, indices, bank, memory_positives=True)["pct_compact"].item() > 1e-3


def test_pct_gradients_skip_invisible_parts_and_survive_a_bank_update():
    parts, vis = random_batch(7)
    parts.requires_grad_(True)
    bank = filled_bank(7)
    losses = pct_loss(parts, vis, PIDS, torch.arange(7), bank)
    bank.update(torch.arange(7), parts, vis, PIDS)  # before backward: the bank is replaced, not modified
    sum(losses.values()).backward()
    assert torch.all(parts.grad[~vis] == 0)
    assert parts.grad[vis].abs().sum() > 0
    assert bank.memory.grad is None


@pytest.mark.parametrize("use_memory", [False, True])
def test_pct_learning_happens(use_memory):
    torch.manual_seed(0)
    pids = torch.arange(4).repeat_interleave(3)
    parts = torch.nn.Parameter(torch.randn(12, 3, 8))
    vis = torch.rand(12, 3) > 0.2
    bank = PartsMemoryBank(12, 3, 8)
    optimiser = torch.optim.Adam([parts], lr=0.05)

    def total() -> torch.Tensor:
        losses = pct_loss(parts, vis, pids, torch.arange(12), bank, use_memory=use_memory)
        return losses["pct_triplet"] + losses["pct_compact"]

    bank.update(torch.arange(12), parts, vis, pids)
    initial = total().item()
    for _ in range(40):
        optimiser.zero_grad()
        loss = total()
        loss.backward()
        optimiser.step()
        bank.update(torch.arange(12), parts, vis, pids)
    assert initial > 0.2
    assert total().item() < 0.25 * initial


# --- parsing ----------------------------------------------------------------------------------


def label_map() -> torch.Tensor:
    """[2, 8, 6]: background, a head band and two torso halves."""
    target = torch.zeros(2, 8, 6, dtype=torch.long)
    target[:, 1:3, 2:4] = 1
    target[:, 3:7, 1:3] = 2
    target[:, 3:7, 3:5] = 3
    target[1, 6:, :] = 4
    return target


def test_parsing_loss_without_spatial_smoothing_is_torch_cross_entropy():
    logits = torch.randn(2, 5, 8, 6, generator=torch.Generator().manual_seed(0))
    expected = F.cross_entropy(logits, label_map(), label_smoothing=0.1)
    torch.testing.assert_close(parsing_loss(logits, label_map(), smoothing=1, label_smoothing=0.1), expected)


@pytest.mark.parametrize("smoothing", [1, 2, 3, 5])
def test_smoothed_target_is_a_distribution_everywhere(smoothing):
    soft = smoothed_parsing_target(label_map(), 5, smoothing, 0.1)
    assert soft.shape == (2, 5, 8, 6)
    torch.testing.assert_close(soft.sum(1), torch.ones(2, 8, 6))
    assert soft.min() >= 0.1 / 5 - 1e-7


def test_spatial_smoothing_changes_only_pixels_near_boundaries():
    target = torch.zeros(1, 6, 8, dtype=torch.long)
    target[:, :, 4:] = 2
    plain = smoothed_parsing_target(target, 3, 1)
    smooth = smoothed_parsing_target(target, 3, 3)
    changed = (plain - smooth).abs().sum(1)[0] > 0
    assert changed[:, [3, 4]].all() and not changed[:, [0, 1, 2, 5, 6, 7]].any()
    torch.testing.assert_close(smooth[0, :, 0, 3], torch.tensor([0.9 * 2 / 3, 0, 0.9 / 3]) + 0.1 / 3)

    uniform = torch.full((2, 8, 6), 3, dtype=torch.long)
    logits = torch.randn(2, 5, 8, 6)
    torch.testing.assert_close(parsing_loss(logits, uniform, smoothing=3), parsing_loss(logits, uniform, smoothing=1))
    assert parsing_loss(logits, label_map(), smoothing=3) != parsing_loss(logits, label_map(), smoothing=1)


def test_parsing_target_resize_modes_on_a_hand_made_map():
    """nearest [base] takes each cell's top-left pixel, nearest-exact [ours] the pixel nearest its centre."""
    target = torch.tensor([[[1, 2, 3, 4], [5, 6, 7, 8], [0, 0, 0, 0], [1, 1, 1, 1]]])  # [1, 4, 4] -> 2x2
    logits = torch.zeros(1, 9, 2, 2)
    logits[0, [1, 3, 0, 0], [0, 0, 1, 1], [0, 1, 0, 1]] = 5.0  # confident on the top-left labels 1, 3 / 0, 0
    top_left = parsing_loss(logits, target, smoothing=1, label_smoothing=0.0, resize="nearest")
    expected = F.cross_entropy(logits, torch.tensor([[[1, 3], [0, 0]]]))
    torch.testing.assert_close(top_left, expected)
    centre = parsing_loss(logits, target, smoothing=1, label_smoothing=0.0, resize="nearest-exact")
    torch.testing.assert_close(centre, F.cross_entropy(logits, torch.tensor([[[6, 8], [1, 1]]])))
    with pytest.raises(ValueError, match="nearest"):
        parsing_loss(logits, target, resize="bilinear")


def test_parsing_loss_resizes_the_target_and_has_gradients():
    logits = torch.randn(2, 5, 8, 6, requires_grad=True)
    full = label_map().repeat_interleave(4, dim=1).repeat_interleave(4, dim=2)  # [2, 32, 24]
    loss = parsing_loss(logits, full)
    torch.testing.assert_close(loss, parsing_loss(logits, label_map()))
    loss.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    half = parsing_loss(logits.detach().half(), label_map())
    assert half.dtype == torch.float32

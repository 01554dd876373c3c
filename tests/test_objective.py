"""The training objective: which terms a loss section switches on, and their values on a hand-made batch."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from drop_cli.losses import batch_hard_triplet_loss, identity_loss, parsing_loss, part_averaged_triplet_loss, pct_loss
from drop_cli.model.output import DropOutput
from drop_cli.recipe import LossConfig, load_recipe
from drop_cli.train.objective import BATCH_TERMS, Objective

N, K, D, CLASSES = 8, 3, 5, 4
PIDS = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])


def fake_output(seed: int = 0) -> tuple[DropOutput, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(N, 2 + K, D, generator=gen)
    visibility = torch.rand(N, K, generator=gen) > 0.3
    out = DropOutput(
        embeddings=embeddings,
        bn_embeddings=torch.randn(N, 2 + K, D, generator=gen),
        id_logits={name: torch.randn(N, CLASSES, generator=gen) for name in ("global", "foreground", "parts")},
        parsing_logits=torch.randn(N, K + 1, 4, 2, generator=gen),
        visibility=visibility,
    )
    labels = torch.randint(0, K + 1, (N, 16, 8), generator=gen, dtype=torch.uint8)
    return out, labels


def test_bpbreid_recipe_is_gilt():
    """The BPBreID-equivalent: identity x 3, the part-averaged triplet without visibility, pixel CE x 0.35."""
    config = load_recipe("bpbreid_occluded_duke").loss
    out, labels = fake_output()
    terms = Objective(config)(out, labels, PIDS, torch.arange(N))
    assert set(terms) == {"id_global", "id_foreground", "id_parts", "part_triplet", "parsing"}
    ids = identity_loss(out.id_logits, PIDS, 0.1)
    for name in ("global", "foreground", "parts"):
        torch.testing.assert_close(terms[f"id_{name}"], ids[name])
    torch.testing.assert_close(terms["part_triplet"], part_averaged_triplet_loss(out.parts, None, PIDS, 0.3))
    torch.testing.assert_close(terms["parsing"], 0.35 * parsing_loss(out.parsing_logits, labels.long(), 1, 0.1))


def test_drop_adds_pct_to_gilt():
    """DROP keeps the part-averaged triplet (with its weight) and adds PCT; the memory adds negatives only."""
    config = load_recipe("occluded_duke").loss
    assert (config.triplet_weight, config.pct, config.memory, config.memory_positives) == (1.0, True, True, False)
    out, labels = fake_output(1)
    objective = Objective(dataclasses.replace(config, pct_weight=2.0, compact_weight=0.25))
    terms = objective(out, labels, PIDS, torch.arange(N))
    assert set(terms) == {
        "id_global",
        "id_foreground",
        "id_parts",
        "part_triplet",
        "pct_triplet",
        "pct_compact",
        "parsing",
    }
    pct = pct_loss(out.parts, out.visibility, PIDS, torch.arange(N), None, 0.3, 0.25, False)
    torch.testing.assert_close(terms["pct_triplet"], 2.0 * pct["pct_triplet"])
    torch.testing.assert_close(terms["pct_compact"], pct["pct_compact"])
    torch.testing.assert_close(terms["parsing"], 0.35 * parsing_loss(out.parsing_logits, labels.long(), 3, 0.1))


def test_foreground_triplet_and_switches():
    out, labels = fake_output(2)
    config = LossConfig(foreground_triplet_weight=1.0, triplet_weight=0.0, pct=False, triplet_visibility=True)
    terms = Objective(config)(out, labels, PIDS, torch.arange(N))
    assert "part_triplet" not in terms and "pct_triplet" not in terms
    torch.testing.assert_close(terms["foreground_triplet"], batch_hard_triplet_loss(out.embeddings[:, 1], PIDS, 0.3))
    masked = Objective(LossConfig(pct=False))(out, labels, PIDS, torch.arange(N))["part_triplet"]
    torch.testing.assert_close(masked, part_averaged_triplet_loss(out.parts, None, PIDS))
    visible_only = Objective(LossConfig(pct=False, triplet_visibility=True))(out, labels, PIDS, torch.arange(N))
    torch.testing.assert_close(
        visible_only["part_triplet"], part_averaged_triplet_loss(out.parts, out.visibility, PIDS)
    )


def test_global_baseline_terms():
    out, labels = fake_output(3)
    terms = Objective(LossConfig(parts=False))(out, labels, PIDS, torch.arange(N))
    assert set(terms) == {"id_global", "global_triplet"}
    torch.testing.assert_close(terms["global_triplet"], batch_hard_triplet_loss(out.embeddings[:, 0], PIDS, 0.3))


def test_batch_terms_are_the_ones_that_compare_images():
    assert BATCH_TERMS == {"global_triplet", "part_triplet", "foreground_triplet", "pct_triplet", "pct_compact"}


@pytest.mark.parametrize("normalize", [True, False])
def test_memory_bank_follows_the_recipe(normalize):
    objective = Objective(LossConfig(pct_normalize=normalize, memory_momentum=0.25))
    bank = objective.memory_bank(10, K, D)
    assert bank.normalize is normalize and bank.momentum == 0.25 and bank.memory.shape == (10, K, D)
    assert Objective(LossConfig(memory=False)).memory_bank(10, K, D) is None

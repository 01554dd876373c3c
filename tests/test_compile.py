"""`train.compile`: the model traces into one graph (no graph break) in training and evaluation, for the
DROP and BPBreID-equivalent recipes, and the traced training step has the eager step's gradients."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from drop_cli.model import build_model
from drop_cli.recipe import load_recipe
from drop_cli.train.objective import Objective
from drop_cli.train.step import StepContext, compiled, forward_backward

K, IDS, BATCH = 8, 4, 8
RECIPES = {"DROP": ["occluded_duke"], "BPBreID-equivalent": ["occluded_duke", "ablations/bpbreid"]}
SMALL = [
    "model.backbone=test_resnet",
    "model.pretrained=false",
    "model.embed_dim=16",
    "data.height=64",
    "data.width=32",
]


def make(name: str):
    recipe = load_recipe(RECIPES[name], SMALL)
    torch.manual_seed(0)
    model = build_model(IDS, K, ppe_height=16, **dataclasses.asdict(recipe.model)).train()
    return recipe, model


def make_batch() -> dict:
    gen = torch.Generator().manual_seed(1)
    return {
        "image": torch.randn(BATCH, 3, 64, 32, generator=gen),
        "labels": torch.randint(0, K + 1, (BATCH, 64, 32), generator=gen, dtype=torch.uint8),
        "pid": torch.arange(IDS).repeat_interleave(BATCH // IDS),
        "index": torch.arange(BATCH),
    }


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("name", list(RECIPES))
def test_the_model_traces_without_graph_breaks(name, mode):
    _, model = make(name)
    getattr(model, mode)()
    explained = torch._dynamo.explain(model)(make_batch()["image"])
    assert explained.graph_break_count == 0, [str(b.reason) for b in explained.break_reasons]
    assert explained.graph_count == 1


def test_compiled_shares_the_weights_and_off_is_the_model_itself():
    _, model = make("DROP")
    assert compiled(model, "off") is model
    fast = compiled(model, "reduce-overhead")
    assert fast is not model and all(a is b for a, b in zip(fast.parameters(), model.parameters()))


@pytest.mark.slow
def test_a_compiled_step_has_the_eager_gradients():
    """The forward and backward traced as torch.compile traces them (AOTAutograd; the aot_eager backend
    runs the traced graphs without generating kernels, which needs minutes on 2 cores): the loss terms
    and every gradient match the eager step's."""
    recipe, eager = make("DROP")
    traced = copy.deepcopy(eager)
    results = []
    for model in (eager, torch.compile(traced, backend="aot_eager", fullgraph=True)):
        context = StepContext(objective=Objective(recipe.loss), device=torch.device("cpu"))
        terms, _ = forward_backward(model, make_batch(), context)
        results.append(({k: v.item() for k, v in terms.items()}, [p.grad for p in model.parameters()]))
    (eager_terms, eager_grads), (traced_terms, traced_grads) = results
    assert eager_terms.keys() == traced_terms.keys() and len(eager_terms) >= 4
    for key in eager_terms:
        assert traced_terms[key] == pytest.approx(eager_terms[key], rel=1e-5, abs=1e-6), key
    assert [g is None for g in traced_grads] == [g is None for g in eager_grads]
    pairs = [(a, b) for a, b in zip(eager_grads, traced_grads) if a is not None]
    assert len(pairs) > 0.9 * len(eager_grads)
    scale = max(a.abs().max().item() for a, _ in pairs)
    assert max((a - b).abs().max().item() for a, b in pairs) <= 1e-5 * scale

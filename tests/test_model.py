"""DropNet and its blocks, on CPU with timm's tiny ``test_resnet`` at 64x32 (a few seconds in all)."""

from __future__ import annotations

import itertools

import pytest
import timm
import torch
import torch.nn.functional as F

from drop_cli.errors import DropError
from drop_cli.model import POOLING, DropNet, DropOutput, build_model
from drop_cli.model.backbone import Backbone
from drop_cli.model.drop_net import EmbeddingHead, ReidStream
from drop_cli.model.parsing_head import ParsingHead, part_visibility
from drop_cli.model.pooling import MaskedMax, avg_pool, max_pool, mean_pool, pooling_function
from drop_cli.model.ppe import PedestrianPositionEncoder

K, CLASSES, DIM = 4, 5, 16
HEIGHT, WIDTH = 64, 32

# (decouple, dpu, ppe): every valid combination; dpu needs decouple.
SWITCHES = [(d, u, p) for d, u, p in itertools.product([True, False], repeat=3) if d or not u]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread is as fast, and does not stall when the CPU is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_net(**kwargs) -> DropNet:
    torch.manual_seed(0)
    args = {
        "backbone": "test_resnet",
        "num_parts": K,
        "num_classes": CLASSES,
        "embed_dim": DIM,
        "ppe_height": HEIGHT // 4,
    }
    return DropNet(**{**args, **kwargs})


def images(n: int = 2) -> torch.Tensor:
    return torch.randn(n, 3, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(1))


def reduction_weights(net: DropNet) -> list[torch.Tensor]:
    """The weights of the embedding head's reduction layer(s)."""
    return [m.weight for m in net.embedding_head.reduction.modules() if isinstance(m, torch.nn.Linear)]


def total(out: DropOutput) -> torch.Tensor:
    """A loss that touches every output."""
    return sum(v.sum() for v in out.id_logits.values()) + out.parsing_logits.sum() + out.bn_embeddings.sum()


# ---------------------------------------------------------------- the network and its switches


@pytest.mark.parametrize("pooling", sorted(POOLING))
@pytest.mark.parametrize("decouple,dpu,ppe", SWITCHES)
def test_switches_forward_backward(decouple, dpu, ppe, pooling):
    net = tiny_net(decouple=decouple, dpu=dpu, ppe=ppe, pooling=pooling).train()
    x = images(3)
    x_before = x.clone()
    out = net(x)
    n = x.shape[0]
    assert out.embeddings.shape == out.bn_embeddings.shape == (n, 2 + K, DIM)
    assert out.parts.shape == (n, K, DIM)
    assert out.parsing_logits.shape == (n, K + 1, HEIGHT // 4, WIDTH // 4)
    assert out.visibility.shape == (n, K) and out.visibility.dtype == torch.bool
    assert set(out.id_logits) == {"global", "foreground", "parts"}
    assert all(v.shape == (n, CLASSES) for v in out.id_logits.values())
    total(out).backward()
    assert torch.equal(x, x_before)
    backbone_first = next(net.backbone.parameters())
    for name, param in [
        ("backbone", backbone_first),
        ("parsing head", net.parsing_head[1].weight),
        *(("reduction", weight) for weight in reduction_weights(net)),
    ]:
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    if decouple:
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parsing_stream.parameters())
    else:
        assert net.parsing_stream is None
    assert (net.position_encoder is not None) == ppe
    assert net.position_encoder is None or net.position_encoder.embedding.grad.abs().sum() > 0
    # BNNeck biases stay frozen
    assert all(not bn.bias.requires_grad for bn in net.embedding_head.bnneck.values())


def test_dpu_needs_decouple():
    with pytest.raises(ValueError, match="decouple"):
        tiny_net(decouple=False, dpu=True)


def test_eval_mode_without_classifier():
    net = tiny_net(num_classes=0).eval()
    x = images(2)
    with torch.no_grad():
        first, second = net(x), net(x)
    assert first.id_logits == {}
    assert first.bn_embeddings.shape == (2, 2 + K, DIM)
    assert torch.equal(first.bn_embeddings, second.bn_embeddings)
    assert net.embedding_head.classifier is None


def test_channels_last_and_autocast():
    """The GPU recipe's mixed precision path, exercised with CPU bfloat16 autocast."""
    net = tiny_net().to(memory_format=torch.channels_last).train()
    x = images(2).to(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x)
        loss = total(out)
    loss.float().backward()
    assert torch.isfinite(out.bn_embeddings.float()).all()
    assert out.parsing_logits.shape == (2, K + 1, HEIGHT // 4, WIDTH // 4)
    assert torch.isfinite(net.parsing_head[1].weight.grad).all()


# ---------------------------------------------------------------- decoupling


def _maps(net: DropNet, x: torch.Tensor):
    """Forward with hooks: (output, F, the parsing head's input)."""
    seen = {}
    hooks = [
        net.reid_stream.register_forward_hook(lambda m, i, o: seen.__setitem__("F", o)),
        net.parsing_head.register_forward_hook(lambda m, i, o: seen.__setitem__("head_in", i[0])),
    ]
    out = net(x)
    for hook in hooks:
        hook.remove()
    return out, seen["F"], seen["head_in"]


def test_decoupled_parsing_head_does_not_read_f():
    net = tiny_net(decouple=True, dpu=True, ppe=False).train()
    seen = {}
    net.parsing_stream.register_forward_hook(lambda m, i, o: seen.__setitem__("dpu", o))
    out, reid_map, head_in = _maps(net, images())
    assert head_in is seen["dpu"]  # the head reads X_p from the DPU
    assert head_in.shape[1] == 128
    parsing_only = out.parsing_logits.square().mean()
    assert torch.autograd.grad(parsing_only, reid_map, retain_graph=True, allow_unused=True)[0] is None
    parsing_only.backward()
    assert all(w.grad is None for w in reduction_weights(net))  # the parsing loss leaves the ReID head alone
    assert next(net.backbone.parameters()).grad is not None  # but trains the shared backbone


def test_coupled_parsing_head_reads_f():
    net = tiny_net(decouple=False, dpu=False, ppe=False).train()
    out, reid_map, head_in = _maps(net, images())
    assert head_in is reid_map
    assert torch.autograd.grad(out.parsing_logits.sum(), reid_map)[0].abs().sum() > 0


def test_decoupled_without_dpu_projects_f():
    net = tiny_net(decouple=True, dpu=False, ppe=False).train()
    out, reid_map, head_in = _maps(net, images())
    assert head_in is not reid_map and head_in.shape[1] == 128
    assert torch.autograd.grad(out.parsing_logits.sum(), reid_map)[0].abs().sum() > 0


# ---------------------------------------------------------------- backbones


@pytest.mark.parametrize(
    "name,last_stride_one,strides",
    [
        ("test_resnet", True, (4, 8, 16, 16)),
        ("test_resnet", False, (4, 8, 16, 32)),
        ("resnet50", True, (4, 8, 16, 16)),
    ],
)
def test_declared_levels_match_maps(name, last_stride_one, strides):
    backbone = Backbone(name, last_stride_one=last_stride_one).eval()
    assert backbone.strides == strides
    with torch.no_grad():
        maps = backbone(torch.randn(1, 3, HEIGHT, WIDTH))
    assert tuple(m.shape[1] for m in maps) == backbone.channels
    assert tuple(HEIGHT // m.shape[2] for m in maps) == backbone.strides
    assert tuple(WIDTH // m.shape[3] for m in maps) == backbone.strides
    # the ReID trick, not a dilated stage
    assert all(conv.dilation == (1, 1) for conv in backbone.modules() if isinstance(conv, torch.nn.Conv2d))
    if name == "resnet50":
        assert backbone.channels == (256, 512, 1024, 2048)


def test_hrnet_w32_levels():
    backbone = Backbone("hrnet_w32").eval()
    assert backbone.channels == (128, 256, 512, 1024)
    assert backbone.strides == (4, 8, 16, 32)
    with torch.no_grad():
        maps = backbone(torch.randn(1, 3, HEIGHT, WIDTH))
    assert [tuple(m.shape[1:]) for m in maps] == [(128, 16, 8), (256, 8, 4), (512, 4, 2), (1024, 2, 1)]


def test_unknown_backbone_names_close_match():
    with pytest.raises(DropError, match="hrnet_w32"):
        Backbone("hrnet_w23")


def test_pretrained_offline_is_a_clear_error(monkeypatch):
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(*args, **kwargs):
        raise LocalEntryNotFoundError("cannot reach the Hub")

    monkeypatch.setattr(timm.models._builder, "load_pretrained", offline)
    with pytest.raises(DropError) as error:
        Backbone("test_resnet", pretrained=True)
    message = str(error.value)
    assert "model.weights: PATH" in message and "model.pretrained: false" in message


@pytest.mark.parametrize("form", ["pth", "safetensors", "wrapped"])
def test_local_weights_load(tmp_path, form):
    torch.manual_seed(3)
    source = timm.create_model("test_resnet")  # the classifier model, as timm and torchvision save it
    state = source.state_dict()
    path = tmp_path / f"weights.{'safetensors' if form == 'safetensors' else 'pth'}"
    if form == "safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    elif form == "wrapped":  # a training checkpoint of a DataParallel model
        torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, path)
    else:
        torch.save(state, path)
    backbone = Backbone("test_resnet", weights=path)
    report = backbone.weights_report
    assert report.missing == []
    assert any(k.endswith("fc.weight") for k in report.unexpected)
    loaded = backbone.model.state_dict()
    assert all(torch.equal(loaded[k], state[k]) for k in loaded)


def test_weights_of_another_architecture_are_an_error(tmp_path):
    path = tmp_path / "other.pth"
    torch.save(timm.create_model("test_efficientnet").state_dict(), path)
    with pytest.raises(DropError, match="do not fit test_resnet"):
        Backbone("test_resnet", weights=path)
    with pytest.raises(DropError, match="does not exist"):
        Backbone("test_resnet", weights=tmp_path / "missing.pth")


# ---------------------------------------------------------------- pooling, visibility, PPE


def naive_max(weights: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """The materialising formula: [N, K, 1, HW] * [N, 1, C, HW] -> max over HW."""
    return (weights[:, :, None] * features[:, None]).amax(dim=3)


def naive_avg(weights: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """BPBreID's GlobalWeightedAveragePoolingHead: sum(A F) / clamp(sum(A), 1e-6)."""
    product = weights[:, :, None] * features[:, None]
    return product.sum(dim=3) / weights.sum(dim=2)[:, :, None].clamp(min=1e-6)


@pytest.mark.parametrize("chunk", [1, 7, 20, 130, None])
def test_max_pool_matches_naive(chunk):
    generator = torch.Generator().manual_seed(0)
    weights = torch.rand(3, 4, 20, generator=generator).requires_grad_()
    features = torch.randn(3, 6, 20, generator=generator).requires_grad_()
    upstream = torch.randn(3, 4, 6, generator=generator)
    fast = max_pool(weights, features, chunk)
    slow = naive_max(weights, features)
    assert torch.equal(fast, slow)
    fast_grads = torch.autograd.grad((fast * upstream).sum(), (weights, features))
    slow_grads = torch.autograd.grad((slow * upstream).sum(), (weights, features))
    for fast_grad, slow_grad in zip(fast_grads, slow_grads):
        torch.testing.assert_close(fast_grad, slow_grad)


def test_fused_product_max_matches_chunked():
    """The function CUDA compiles into one kernel (run eagerly here) gives the chunked loop's values and argmax."""
    from drop_cli.model.pooling import _product_max

    generator = torch.Generator().manual_seed(1)
    weights = torch.rand(3, 4, 20, generator=generator)
    features = torch.randn(3, 6, 20, generator=generator).to(torch.bfloat16)
    values, indices = _product_max(weights, features)
    assert values.dtype == torch.float32 and values.shape == indices.shape == (3, 4, 6)
    assert torch.equal(values, max_pool(weights, features, 7))
    assert torch.equal(
        values, torch.gather(weights[:, :, None] * features[:, None].float(), 3, indices[..., None])[..., 0]
    )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_max_pool_on_cuda_matches_cpu():
    generator = torch.Generator().manual_seed(2)
    weights = torch.rand(5, 9, 64, generator=generator).requires_grad_()
    features = torch.randn(5, 32, 64, generator=generator).requires_grad_()
    upstream = torch.randn(5, 9, 32, generator=generator)
    on_cpu = max_pool(weights, features)
    cpu_grads = torch.autograd.grad((on_cpu * upstream).sum(), (weights, features))
    cuda_inputs = [t.detach().cuda().requires_grad_() for t in (weights, features)]
    on_cuda = max_pool(*cuda_inputs)
    cuda_grads = torch.autograd.grad((on_cuda * upstream.cuda()).sum(), cuda_inputs)
    torch.testing.assert_close(on_cuda.cpu(), on_cpu)
    for cuda_grad, cpu_grad in zip(cuda_grads, cpu_grads):
        torch.testing.assert_close(cuda_grad.cpu(), cpu_grad)


def test_max_pool_gradcheck():
    generator = torch.Generator().manual_seed(0)
    weights = torch.rand(2, 3, 5, dtype=torch.double, generator=generator).requires_grad_()
    features = torch.randn(2, 4, 5, dtype=torch.double, generator=generator).requires_grad_()
    for chunk in (1, 7, None):
        assert torch.autograd.gradcheck(lambda w, f, chunk=chunk: MaskedMax.apply(w, f, chunk), (weights, features))


def test_avg_pool_matches_naive_and_gradcheck():
    generator = torch.Generator().manual_seed(0)
    weights = torch.rand(2, 3, 5, dtype=torch.double, generator=generator).requires_grad_()
    features = torch.randn(2, 4, 5, dtype=torch.double, generator=generator).requires_grad_()
    torch.testing.assert_close(avg_pool(weights, features), naive_avg(weights, features))
    assert torch.autograd.gradcheck(avg_pool, (weights, features))


def test_pooling_table():
    assert set(POOLING) == {"avg", "max", "avg+max"}
    weights, features = torch.rand(2, 3, 10), torch.randn(2, 5, 10)
    torch.testing.assert_close(
        pooling_function("avg+max")(weights, features), naive_avg(weights, features) + naive_max(weights, features)
    )
    torch.testing.assert_close(
        pooling_function("avg", "mean")(weights, features), (weights[:, :, None] * features[:, None]).mean(dim=3)
    )
    torch.testing.assert_close(pooling_function("max", "mean")(weights, features), naive_max(weights, features))
    with pytest.raises(ValueError, match="avg\\+max"):
        tiny_net(pooling="avgmax")


def test_mean_pool_is_bpbreids_foreground_pooling_on_a_hand_made_case():
    """GlobalAveragePoolingHead: the spatial mean of mask x F, not divided by the mask's mass."""
    weights = torch.tensor([[[1.0, 0.0, 0.5, 0.5]]])  # one map over 4 pixels
    features = torch.tensor([[[2.0, 8.0, 4.0, 0.0], [1.0, 1.0, 1.0, 1.0]]])  # 2 channels
    assert mean_pool(weights, features).tolist() == [[[(2 + 2) / 4, (1 + 0.5 + 0.5) / 4]]]
    assert avg_pool(weights, features).tolist() == [[[(2 + 2) / 2, (1 + 0.5 + 0.5) / 2]]]
    assert torch.equal(avg_pool(torch.zeros(1, 1, 4), features), torch.zeros(1, 1, 2))  # no mass: zeros, no NaN


@pytest.mark.parametrize("foreground_pooling", ["mean", "weighted"])
@pytest.mark.parametrize("pooling", ["avg", "avg+max"])
def test_pooled_vectors_follow_the_switches(foreground_pooling, pooling):
    """What the embedding head receives: GAP(F), the foreground and the K parts pooled as the switches say."""
    net = tiny_net(decouple=False, dpu=False, ppe=False, pooling=pooling, foreground_pooling=foreground_pooling).eval()
    seen = {}
    net.embedding_head.register_forward_pre_hook(lambda m, args: seen.__setitem__("pooled", args[0]))
    with torch.no_grad():
        out, reid_map, _ = _maps(net, images())
    flat = reid_map.flatten(2)
    attention = out.parsing_logits.softmax(1)[:, 1:].flatten(2)
    foreground = attention.amax(1, keepdim=True)
    fg_avg = (
        (foreground[:, :, None] * flat[:, None]).mean(3)
        if foreground_pooling == "mean"
        else naive_avg(foreground, flat)
    )
    expected_fg, expected_parts = fg_avg, naive_avg(attention, flat)
    if pooling == "avg+max":
        expected_fg, expected_parts = (
            expected_fg + naive_max(foreground, flat),
            expected_parts + naive_max(attention, flat),
        )
    pooled = seen["pooled"]
    torch.testing.assert_close(pooled[:, 0], reid_map.mean(dim=(2, 3)))
    torch.testing.assert_close(pooled[:, 1:2], expected_fg)
    torch.testing.assert_close(pooled[:, 2:], expected_parts)


def test_separate_reductions_are_bpbreids_after_pooling_layers():
    """Global, foreground and parts each go through their own Linear(bias) + BN + ReLU; the K parts share one."""
    torch.manual_seed(0)
    head = EmbeddingHead(12, num_parts=3, embed_dim=6, num_classes=4, reduction="separate").train()
    assert set(head.reduction) == {"global", "foreground", "parts"}
    for layer in head.reduction.values():
        linear, bn = layer[0], layer[1]
        assert linear.bias is not None and not linear.bias.any()
        assert 0.005 < linear.weight.std().item() < 0.015  # N(0, 0.01) [base]
        assert torch.equal(bn.weight, torch.ones(6)) and not bn.bias.any()
    pooled = torch.randn(5, 2 + 3, 12)
    embeddings, _, _ = head(pooled)
    torch.testing.assert_close(embeddings[:, 0], head.reduction["global"](pooled[:, 0]))
    torch.testing.assert_close(embeddings[:, 1], head.reduction["foreground"](pooled[:, 1]))
    torch.testing.assert_close(embeddings[:, 2:], head.reduction["parts"](pooled[:, 2:].reshape(15, 12)).view(5, 3, 6))


def test_shared_reduction_is_one_layer_for_every_vector():
    torch.manual_seed(0)
    head = EmbeddingHead(12, num_parts=3, embed_dim=6, reduction="shared").train()
    assert head.reduction[0].bias is None
    pooled = torch.randn(5, 2 + 3, 12)
    embeddings, _, _ = head(pooled)
    torch.testing.assert_close(embeddings, head.reduction(pooled.reshape(25, 12)).view(5, 5, 6))
    with pytest.raises(ValueError, match="separate"):
        EmbeddingHead(12, num_parts=3, reduction="per_part")


def test_parsing_head_initialisations():
    torch.manual_seed(0)
    normal = ParsingHead(256, num_parts=8, init="normal")[1]
    assert 0.0008 < normal.weight.std().item() < 0.0012 and not normal.bias.any()  # N(0, 0.001) [base]
    kaiming = ParsingHead(256, num_parts=8, init="kaiming")[1]
    expected = (2 / 9) ** 0.5  # He normal, fan_out = 9 output channels x 1 x 1
    assert 0.8 * expected < kaiming.weight.std().item() < 1.2 * expected and not kaiming.bias.any()
    with pytest.raises(ValueError, match="kaiming"):
        ParsingHead(4, num_parts=2, init="xavier")


@pytest.mark.parametrize("align_corners", [True, False])
def test_reid_stream_upsamples_with_the_chosen_alignment(align_corners):
    maps = [torch.randn(1, 2, 8, 4), torch.randn(1, 3, 4, 2)]
    out = ReidStream([2, 3], align_corners=align_corners)(maps)
    assert out.shape == (1, 5, 8, 4)
    torch.testing.assert_close(
        out[:, 2:], F.interpolate(maps[1], size=(8, 4), mode="bilinear", align_corners=align_corners)
    )
    other = F.interpolate(maps[1], size=(8, 4), mode="bilinear", align_corners=not align_corners)
    assert not torch.allclose(out[:, 2:], other)


def test_part_visibility_on_a_hand_set_map():
    logits = torch.zeros(2, 4, 2, 3)  # K = 3 parts + background, 2x3 pixels
    logits[0, 0] = 1.0  # image 0: background everywhere...
    logits[0, 2, 1, 2] = 5.0  # ...except one pixel won by part 2
    logits[1, 1] = 2.0  # image 1: part 1 everywhere...
    logits[1, 3, 0, 0] = 3.0  # ...except one pixel won by part 3
    logits[1, 2] = 1.9  # part 2 is second everywhere: never wins
    visible = part_visibility(logits)
    assert visible.dtype == torch.bool
    assert visible.tolist() == [[False, True, False], [True, False, True]]


def test_ppe_adds_a_row_embedding_and_interpolates():
    encoder = PedestrianPositionEncoder(3, height=4)
    x = torch.zeros(2, 3, 4, 5)
    out = encoder(x)
    assert torch.equal(x, torch.zeros_like(x))  # not in place
    torch.testing.assert_close(out, encoder.embedding.expand(2, 3, 4, 5))
    taller = encoder(torch.zeros(1, 3, 6, 2))
    assert taller.shape == (1, 3, 6, 2)
    assert torch.equal(taller[..., 0], taller[..., 1])  # the same over the width


# ---------------------------------------------------------------- build_model


def test_build_model_maps_the_recipe_section():
    net = build_model(
        CLASSES,
        K,
        backbone="test_resnet",
        embed_dim=DIM,
        decouple=False,
        dpu=False,
        ppe=False,
        pooling="avg",
        weights=None,
        ppe_height=None,
        reduction="shared",
        parsing_init="kaiming",
        align_corners=False,
        foreground_pooling="weighted",
    )
    assert (net.decouple, net.dpu, net.ppe, net.pooling) == (False, False, False, "avg")
    assert not isinstance(net.embedding_head.reduction, torch.nn.ModuleDict) and not net.reid_stream.align_corners
    assert net.num_parts == K and net.num_classes == CLASSES and net.embed_dim == DIM


def test_build_model_unknown_key_names_the_closest():
    with pytest.raises(DropError) as error:
        build_model(CLASSES, K, backbone="test_resnet", decoupel=False)
    assert "decoupel" in str(error.value) and "Did you mean 'decouple'" in str(error.value)


def test_input_normalisation_follows_the_starting_weights():
    """A backbone starting from pretrained or local weights gets the normalisation its weights expect
    (timm's config: test_resnet's is 0.5 / 0.5), one starting from random weights ImageNet's [base]."""
    from drop_cli.model import input_normalisation

    net = tiny_net()
    assert net.backbone.mean == (0.5, 0.5, 0.5)
    assert input_normalisation(net, pretrained=True, weights=None) == {"mean": (0.5,) * 3, "std": (0.5,) * 3}
    assert input_normalisation(net, pretrained=False, weights="w.pth")["mean"] == (0.5,) * 3
    assert input_normalisation(net, pretrained=False, weights=None) == {
        "mean": (0.485, 0.456, 0.406),
        "std": (0.229, 0.224, 0.225),
    }

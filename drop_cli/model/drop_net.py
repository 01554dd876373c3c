"""DropNet: DROP's occluded person re-identification network.

DROP: "Decouple Re-identification and human Parsing with task-specific features" (Dou et al.,
arXiv 2401.18032), built on BPBreID ("Body Part-Based Representation Learning for Occluded Person
Re-Identification", Somers et al., WACV 2023). DROP's authors published no code and state that theirs
is BPBreID's code base (VlSomers/bpbreid, ``torchreid/models/bpbreid.py``). What DROP's paper states
is marked [paper], BPBreID's code [base], our concrete choices [ours].

    images [N, 3, H, W]
      -> Backbone (hrnet_w32, features_only) [base]: maps at strides 4/8/16/32
      -> ReID stream [base]: all maps bilinearly upsampled to stride 4 (align_corners=True) and
         concatenated: F [N, C, H/4, W/4]
      -> parsing stream, decoupled [paper]: DPU(maps) -> X_p [N, 128, H/4, W/4] (dpu.py, layers [ours]),
         + PPE row embedding [paper] (ppe.py, learned per row [ours]),
         -> parsing head [base]: BN + 1x1 conv -> S [N, K+1, H/4, W/4] (parsing_head.py)
      -> A = softmax(S) over channels (float32); foreground map = max_k A_k over the K parts [base]
      -> pooling of F (pooling.py): global = GAP(F) [base]; parts = weighted average under A_k [base]
         (+ weighted max [paper, "weighted average and max pooling"; the sum is ours]); foreground =
         spatial mean of A_fg F [base] (+ the same max)
      -> embedding head [base]: after-pooling reductions (Linear + BN + ReLU, C -> D): one for the
         global vector, one for the foreground, one shared by the K parts (BPBreID's
         ``init_dim_reduce_layers``, mode ``after_pooling``); then a BNNeck (BatchNorm1d, frozen bias)
         and a bias-free linear classifier for "global", "foreground" and "parts" (the K part
         embeddings concatenated, [N, K*D])
      -> visibility [base]: part k is visible iff it wins the per-pixel argmax of S somewhere.

BPBreID also pools and reduces a background embedding and classifies each part on its own; neither
enters its GiLt loss (weights 0) nor its test distance, so DropNet has no such layers.

Switches for the ablations and the BPBreID-equivalent (constructor arguments, never subclasses):
``decouple`` (False: the parsing head reads F itself, as BPBreID's), ``dpu`` (False with
``decouple=True``: X_p is a 1x1 conv + BN + ReLU of F [ours]), ``ppe``, ``pooling`` (a ``POOLING``
key: "avg" [base], "max", "avg+max" [paper]). ``decouple=False, dpu=False, ppe=False,
pooling="avg"`` with the other arguments at their defaults is BPBreID's model (proved against its code
by ``benchmarks/bpbreid_parity.py``). Our earlier choices stay as options: ``reduction="shared"``,
``foreground_pooling="weighted"``, ``parsing_init="kaiming"``, ``align_corners=False``.

[base] The ReID losses' gradients reach the parsing stream through A (the pooling weights are not
detached), as in BPBreID; the decoupling is in the features each head reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import torch
from torch import nn

from .backbone import Backbone
from .dpu import DetailPreservingUpsampling, Projection, resize
from .output import DropOutput
from .parsing_head import ParsingHead, part_visibility
from .pooling import pooling_function
from .ppe import PedestrianPositionEncoder

__all__ = ["REDUCTIONS", "DropNet", "EmbeddingHead", "ReidStream"]

# Recipe key model.reduction: one after-pooling reduction per embedding type [base], or one for all [ours].
REDUCTIONS = ("separate", "shared")


class ReidStream(nn.Module):
    """[base] The ReID map F: every backbone map bilinearly upsampled to the finest map's size, concatenated.

    Args:
        in_channels: width of each backbone map (``Backbone.channels``); F has their sum
            (1920 for hrnet_w32).
        align_corners: of the bilinear upsampling: True as BPBreID's HRNet [base].
    """

    def __init__(self, in_channels: tuple[int, ...] | list[int], *, align_corners: bool = True):
        super().__init__()
        self.out_channels = sum(in_channels)
        self.align_corners = align_corners

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Args: features: ``[N, C_i, H_i, W_i]``, finest first. Returns: F [N, sum C_i, H_0, W_0]."""
        size = features[0].shape[-2:]
        return torch.cat([resize(f, size, self.align_corners) for f in features], dim=1)


def _reduction_layer(in_channels: int, embed_dim: int, *, bias: bool) -> nn.Sequential:
    """Linear + BatchNorm1d + ReLU. With ``bias`` it is BPBreID's ``AfterPoolingDimReduceLayer``
    (weights N(0, 0.01), zero bias) [base]; without, our shared layer's (He init, fan_out) [ours]."""
    linear = nn.Linear(in_channels, embed_dim, bias=bias)
    if bias:
        nn.init.normal_(linear.weight, std=0.01)
        nn.init.zeros_(linear.bias)
    else:
        nn.init.kaiming_normal_(linear.weight, mode="fan_out")
    return nn.Sequential(linear, nn.BatchNorm1d(embed_dim), nn.ReLU(inplace=True))


class EmbeddingHead(nn.Module):
    """Pooled features -> embeddings, BNNeck embeddings and identity logits [base].

    Args:
        in_channels: C, the width of the pooled vectors.
        num_parts: K.
        embed_dim: D (512).
        num_classes: training identities; 0 builds no classifier.
        reduction: "separate" [base]: one reduction layer for the global vector, one for the
            foreground, one shared by the K parts (each its own BatchNorm statistics); "shared"
            [ours]: one layer for all 2 + K vectors.
    """

    def __init__(
        self,
        in_channels: int,
        *,
        num_parts: int,
        embed_dim: int = 512,
        num_classes: int = 0,
        reduction: str = "separate",
    ):
        super().__init__()
        self.num_parts, self.embed_dim, self.num_classes = num_parts, embed_dim, num_classes
        if reduction == "separate":
            self.reduction: nn.Module = nn.ModuleDict(
                {
                    name: _reduction_layer(in_channels, embed_dim, bias=True)
                    for name in ("global", "foreground", "parts")
                }
            )
        elif reduction == "shared":
            self.reduction = _reduction_layer(in_channels, embed_dim, bias=False)
        else:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, not {reduction!r}")
        # BNNeck: parts get one BatchNorm1d over the K*D concatenation, i.e. their own statistics per part.
        self.bnneck = nn.ModuleDict(
            {
                "global": nn.BatchNorm1d(embed_dim),
                "foreground": nn.BatchNorm1d(embed_dim),
                "parts": nn.BatchNorm1d(num_parts * embed_dim),
            }
        )
        for bn in self.bnneck.values():
            bn.bias.requires_grad_(False)
        self.classifier = (
            nn.ModuleDict(
                {
                    "global": nn.Linear(embed_dim, num_classes, bias=False),
                    "foreground": nn.Linear(embed_dim, num_classes, bias=False),
                    "parts": nn.Linear(num_parts * embed_dim, num_classes, bias=False),
                }
            )
            if num_classes > 0
            else None
        )
        for linear in self.classifier.values() if self.classifier is not None else ():
            nn.init.normal_(cast(nn.Linear, linear).weight, std=0.001)

    def _reduce(self, pooled: torch.Tensor) -> torch.Tensor:
        """[N, 2 + K, C] -> [N, 2 + K, D]."""
        n, m, _ = pooled.shape
        if isinstance(self.reduction, nn.ModuleDict):
            parts = self.reduction["parts"](pooled[:, 2:].flatten(0, 1)).view(n, m - 2, self.embed_dim)
            return torch.cat(
                [
                    self.reduction["global"](pooled[:, 0])[:, None],
                    self.reduction["foreground"](pooled[:, 1])[:, None],
                    parts,
                ],
                dim=1,
            )
        return self.reduction(pooled.flatten(0, 1)).view(n, m, self.embed_dim)

    def forward(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Reduce, BNNeck and classify.

        Args:
            pooled: [N, 2 + K, C]: global, foreground, then parts 1..K.

        Returns:
            embeddings [N, 2 + K, D], bn_embeddings [N, 2 + K, D], and id_logits
            {"global", "foreground", "parts": [N, num_classes]} (empty without classifier).
        """
        n = pooled.shape[0]
        embeddings = self._reduce(pooled)
        bn = {
            "global": self.bnneck["global"](embeddings[:, 0]),
            "foreground": self.bnneck["foreground"](embeddings[:, 1]),
            "parts": self.bnneck["parts"](embeddings[:, 2:].flatten(1)),
        }
        bn_embeddings = torch.cat(
            [bn["global"][:, None], bn["foreground"][:, None], bn["parts"].view(n, self.num_parts, self.embed_dim)],
            dim=1,
        )
        logits = {} if self.classifier is None else {key: self.classifier[key](bn[key]) for key in bn}
        return embeddings, bn_embeddings, logits


class DropNet(nn.Module):
    """DROP: a ReID stream and a decoupled parsing stream on one backbone.

    Args:
        backbone: timm model name (``Backbone``): "hrnet_w32" [base], "resnet50", "test_resnet", ...
        num_parts: K, the number of body parts of the parsing labels (background excluded).
        num_classes: training identities for the classifiers; 0 builds none (feature extraction).
        embed_dim: D, the width of every embedding (512).
        decouple: the parsing head reads its own map X_p [paper]; False: it reads F (BPBreID-like).
        dpu: X_p from Detail-Preserving Upsampling of the backbone maps [paper]; False: a 1x1
            conv + BN + ReLU of F [ours]. Needs ``decouple=True``.
        ppe: add the Pedestrian Position Encoder to the parsing head's input [paper].
        pooling: "avg" [base], "max" or "avg+max" [paper] (``POOLING``).
        foreground_pooling: the foreground's average term: "mean", the spatial mean of A_fg F
            [base]; "weighted", a weighted average like a part's [ours] (``AVERAGES``).
        reduction: "separate" after-pooling reductions [base] or one "shared" [ours] (``EmbeddingHead``).
        parsing_init: the parsing head's convolution: "normal" N(0, 0.001) [base] or "kaiming" [ours].
        align_corners: of the ReID stream's bilinear upsampling: True [base].
        pretrained: ImageNet weights for the backbone through timm (needs the network).
        weights: a local timm or torchvision state dict for the backbone (wins over ``pretrained``).
        last_stride_one: ResNet backbones run their last stage at stride 1 (ignored by HRNet).
        dpu_channels: width of every DPU scale (64) [ours].
        parsing_channels: width of X_p (128) [ours].
        ppe_height: rows the PPE embedding is learned for: input height / 4 (64 for 256x128);
            other heights interpolate it.
    """

    def __init__(
        self,
        *,
        backbone: str = "hrnet_w32",
        num_parts: int = 8,
        num_classes: int = 0,
        embed_dim: int = 512,
        decouple: bool = True,
        dpu: bool = True,
        ppe: bool = True,
        pooling: str = "avg+max",
        foreground_pooling: str = "mean",
        reduction: str = "separate",
        parsing_init: str = "normal",
        align_corners: bool = True,
        pretrained: bool = False,
        weights: str | Path | None = None,
        last_stride_one: bool = True,
        dpu_channels: int = 64,
        parsing_channels: int = 128,
        ppe_height: int = 64,
    ):
        super().__init__()
        if dpu and not decouple:
            raise ValueError("dpu=True needs decouple=True: without decoupling the parsing head reads F")
        if num_parts < 1:
            raise ValueError(f"num_parts must be at least 1, not {num_parts}")
        self.pool_parts = pooling_function(pooling, "weighted")
        self.pool_foreground = pooling_function(pooling, foreground_pooling)
        self.num_parts, self.num_classes, self.embed_dim = num_parts, num_classes, embed_dim
        self.decouple, self.dpu, self.ppe, self.pooling = decouple, dpu, ppe, pooling

        self.backbone = Backbone(backbone, pretrained=pretrained, weights=weights, last_stride_one=last_stride_one)
        self.reid_stream = ReidStream(self.backbone.channels, align_corners=align_corners)
        self.feature_dim = self.reid_stream.out_channels  # C
        # None: the parsing head reads F; DPU reads the backbone maps; the projection reads F
        self.parsing_stream: nn.Module | None
        if not decouple:
            self.parsing_stream = None
            parsing_in = self.feature_dim
        elif dpu:
            self.parsing_stream = DetailPreservingUpsampling(
                self.backbone.channels, channels=dpu_channels, out_channels=parsing_channels
            )
            parsing_in = parsing_channels
        else:
            self.parsing_stream = Projection(self.feature_dim, out_channels=parsing_channels)
            parsing_in = parsing_channels
        self.position_encoder = PedestrianPositionEncoder(parsing_in, height=ppe_height) if ppe else None
        self.parsing_head = ParsingHead(parsing_in, num_parts=num_parts, init=parsing_init)
        self.embedding_head = EmbeddingHead(
            self.feature_dim, num_parts=num_parts, embed_dim=embed_dim, num_classes=num_classes, reduction=reduction
        )
        self._init_parsing_stream()

    def _init_parsing_stream(self) -> None:
        """He init for the parsing stream's convolutions [ours] (the backbone keeps timm's init or its weights)."""
        for m in self.parsing_stream.modules() if self.parsing_stream is not None else ():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, images: torch.Tensor) -> DropOutput:
        """Embeddings, identity logits, parsing logits and visibility of a batch, in train and eval mode.

        Args:
            images: [N, 3, H, W] normalised images (``backbone.mean``/``backbone.std``), H and W
                multiples of 32 (e.g. 256x128); channels_last and autocast work.

        Returns:
            DropOutput with embeddings/bn_embeddings [N, 2 + K, D] (global, foreground, parts),
            id_logits {"global", "foreground", "parts": [N, num_classes]} (empty when
            num_classes=0), parsing_logits [N, K + 1, H/4, W/4], visibility [N, K] bool.
        """
        features = self.backbone(images)
        reid_map = self.reid_stream(features)  # F [N, C, h, w]
        if self.parsing_stream is None:
            parsing_map = reid_map
        else:
            parsing_map = self.parsing_stream(features if self.dpu else reid_map)
        if self.position_encoder is not None:
            parsing_map = self.position_encoder(parsing_map)
        parsing_logits = self.parsing_head(parsing_map)  # S [N, K+1, h, w]

        attention = parsing_logits.float().softmax(dim=1)[:, 1:].flatten(2)  # A_1..A_K [N, K, hw], float32
        flat = reid_map.flatten(2)  # [N, C, hw]
        parts = self.pool_parts(attention, flat)  # [N, K, C]
        foreground = self.pool_foreground(attention.amax(dim=1, keepdim=True), flat)  # [N, 1, C]
        global_feature = reid_map.mean(dim=(2, 3), dtype=torch.float32)  # [N, C]
        pooled = torch.cat([global_feature[:, None], foreground.float(), parts.float()], dim=1)  # [N, 2+K, C]

        embeddings, bn_embeddings, id_logits = self.embedding_head(pooled)
        return DropOutput(
            embeddings=embeddings,
            bn_embeddings=bn_embeddings,
            id_logits=id_logits,
            parsing_logits=parsing_logits,
            visibility=part_visibility(parsing_logits),
        )

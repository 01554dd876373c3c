"""DropNet: DROP's occluded person re-identification network.

DROP: "Decouple Re-identification and human Parsing with task-specific features" (Dou et al.,
arXiv 2401.18032), built on BPBreID ("Body Part-Based Representation Learning for Occluded Person
Re-Identification", Somers et al., WACV 2023). The authors published no code; what the papers state
is marked [paper] (DROP) or [base] (BPBreID behaviour DROP inherits), our concrete choices [ours].

    images [N, 3, H, W]
      -> Backbone (hrnet_w32, features_only) [base]: maps at strides 4/8/16/32
      -> ReID stream [base]: all maps upsampled to stride 4 and concatenated: F [N, C, H/4, W/4]
      -> parsing stream, decoupled [paper]: DPU(maps) -> X_p [N, 128, H/4, W/4] (dpu.py, layers [ours]),
         + PPE row embedding [paper] (ppe.py, learned per row [ours]),
         -> parsing head [base]: BN + 1x1 conv -> S [N, K+1, H/4, W/4] (parsing_head.py)
      -> A = softmax(S) over channels (float32); foreground map = max_k A_k over the K parts [base]
      -> parsing-guided pooling of F [paper: weighted average + max] (pooling.py):
         foreground and parts [N, 1+K, C]; global = GAP(F) [base]
      -> embedding head [base]: one Linear C->D + BN + ReLU shared by global, foreground and every
         part (shared weights and BN statistics, as BPBreID's after-pooling reduction), then a
         BNNeck (BatchNorm1d, frozen bias) per embedding type and bias-free linear classifiers for
         "global", "foreground" and "parts" (the K part embeddings concatenated, [N, K*D])
      -> visibility [base]: part k is visible iff it wins the per-pixel argmax of S somewhere.

Switches for the ablations and the BPBreID-equivalent baseline (constructor arguments, never
subclasses): ``decouple`` (False: the parsing head reads F itself, as BPBreID's), ``dpu`` (False with
``decouple=True``: X_p is a 1x1 conv + BN + ReLU of F [ours]), ``ppe``, ``pooling`` (a ``POOLING``
key: "avg" [base], "max", "avg+max" [paper]). ``decouple=False, dpu=False, ppe=False,
pooling="avg"`` is the BPBreID-equivalent model.

[base] The ReID losses' gradients reach the parsing stream through A (the pooling weights are not
detached), as in BPBreID; the decoupling is in the features each head reads.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import DropError, lookup
from .backbone import Backbone
from .dpu import DetailPreservingUpsampling, Projection, resize
from .output import DropOutput
from .parsing_head import ParsingHead, part_visibility
from .pooling import POOLING
from .ppe import PedestrianPositionEncoder

__all__ = ["DropNet", "EmbeddingHead", "ReidStream"]


class ReidStream(nn.Module):
    """[base] The ReID map F: every backbone map bilinearly upsampled to the finest map's size, concatenated.

    Args:
        in_channels: width of each backbone map (``Backbone.channels``); F has their sum
            (1920 for hrnet_w32).
    """

    def __init__(self, in_channels: tuple[int, ...] | list[int]):
        super().__init__()
        self.out_channels = sum(in_channels)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Args: features: ``[N, C_i, H_i, W_i]``, finest first. Returns: F [N, sum C_i, H_0, W_0]."""
        size = features[0].shape[-2:]
        return torch.cat([resize(f, size) for f in features], dim=1)


class EmbeddingHead(nn.Module):
    """Pooled features -> embeddings, BNNeck embeddings and identity logits [base].

    Args:
        in_channels: C, the width of the pooled vectors.
        num_parts: K.
        embed_dim: D (512).
        num_classes: training identities; 0 builds no classifier.
    """

    def __init__(self, in_channels: int, *, num_parts: int, embed_dim: int = 512, num_classes: int = 0):
        super().__init__()
        self.num_parts, self.embed_dim, self.num_classes = num_parts, embed_dim, num_classes
        self.reduction = nn.Sequential(
            nn.Linear(in_channels, embed_dim, bias=False), nn.BatchNorm1d(embed_dim), nn.ReLU(inplace=True))
        # BNNeck: parts get one BatchNorm1d over the K*D concatenation, i.e. their own statistics per part.
        self.bnneck = nn.ModuleDict({
            "global": nn.BatchNorm1d(embed_dim),
            "foreground": nn.BatchNorm1d(embed_dim),
            "parts": nn.BatchNorm1d(num_parts * embed_dim),
        })
        for bn in self.bnneck.values():
            bn.bias.requires_grad_(False)
        self.classifier = nn.ModuleDict({
            "global": nn.Linear(embed_dim, num_classes, bias=False),
            "foreground": nn.Linear(embed_dim, num_classes, bias=False),
            "parts": nn.Linear(num_parts * embed_dim, num_classes, bias=False),
        }) if num_classes > 0 else None
        nn.init.kaiming_normal_(self.reduction[0].weight, mode="fan_out")
        for linear in (self.classifier.values() if self.classifier is not None else ()):
            nn.init.normal_(linear.weight, std=0.001)

    def forward(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Reduce, BNNeck and classify.

        Args:
            pooled: [N, 2 + K, C]: global, foreground, then parts 1..K.

        Returns:
            embeddings [N, 2 + K, D], bn_embeddings [N, 2 + K, D], and id_logits
            {"global", "foreground", "parts": [N, num_classes]} (empty without classifier).
        """
        n, m, _ = pooled.shape
        embeddings = self.reduction(pooled.flatten(0, 1)).view(n, m, self.embed_dim)
        bn = {
            "global": self.bnneck["global"](embeddings[:, 0]),
            "foreground": self.bnneck["foreground"](embeddings[:, 1]),
            "parts": self.bnneck["parts"](embeddings[:, 2:].flatten(1)),
        }
        bn_embeddings = torch.cat(
            [bn["global"][:, None], bn["foreground"][:, None], bn["parts"].view(n, self.num_parts, self.embed_dim)],
            dim=1)
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
        pretrained: bool = False,
        weights: str | Path | None = None,
        last_stride_one: bool = True,
        dpu_channels: int = 64,
        parsing_channels: int = 128,
        ppe_height: int = 64,
    ):
        super().__init__()
        if dpu and not decouple:
            raise DropError("dpu=true needs decouple=true: without decoupling the parsing head reads F, "
                            "so there is no parsing map for DPU to build.",
                            hint="Set model.dpu: false (or model.decouple: true).")
        if num_parts < 1:
            raise DropError(f"num_parts must be at least 1, not {num_parts}.")
        self.pool = lookup(POOLING, pooling, "pooling")
        self.num_parts, self.num_classes, self.embed_dim = num_parts, num_classes, embed_dim
        self.decouple, self.dpu, self.ppe, self.pooling = decouple, dpu, ppe, pooling

        self.backbone = Backbone(backbone, pretrained=pretrained, weights=weights, last_stride_one=last_stride_one)
        self.reid_stream = ReidStream(self.backbone.channels)
        self.feature_dim = self.reid_stream.out_channels  # C
        if not decouple:
            self.parsing_stream = None
            parsing_in = self.feature_dim
        elif dpu:
            self.parsing_stream = DetailPreservingUpsampling(
                self.backbone.channels, channels=dpu_channels, out_channels=parsing_channels)
            parsing_in = parsing_channels
        else:
            self.parsing_stream = Projection(self.feature_dim, out_channels=parsing_channels)
            parsing_in = parsing_channels
        self.position_encoder = PedestrianPositionEncoder(parsing_in, height=ppe_height) if ppe else None
        self.parsing_head = ParsingHead(parsing_in, num_parts=num_parts)
        self.embedding_head = EmbeddingHead(
            self.feature_dim, num_parts=num_parts, embed_dim=embed_dim, num_classes=num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        """He init for the new convolutions (the backbone keeps timm's init or its weights)."""
        for module in (self.parsing_stream, self.parsing_head):
            for m in module.modules() if module is not None else ():
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
        if not self.decouple:
            parsing_map = reid_map
        elif self.dpu:
            parsing_map = self.parsing_stream(features)
        else:
            parsing_map = self.parsing_stream(reid_map)
        if self.position_encoder is not None:
            parsing_map = self.position_encoder(parsing_map)
        parsing_logits = self.parsing_head(parsing_map)  # S [N, K+1, h, w]

        attention = parsing_logits.float().softmax(dim=1)[:, 1:]  # A_1..A_K, float32 under autocast too
        maps = torch.cat([attention.amax(dim=1, keepdim=True), attention], dim=1).flatten(2)  # [N, 1+K, hw]
        pooled = self.pool(maps, reid_map.flatten(2))  # [N, 1+K, C]
        global_feature = reid_map.mean(dim=(2, 3), dtype=torch.float32)  # [N, C]
        pooled = torch.cat([global_feature[:, None], pooled.float()], dim=1)  # [N, 2+K, C]

        embeddings, bn_embeddings, id_logits = self.embedding_head(pooled)
        return DropOutput(embeddings=embeddings, bn_embeddings=bn_embeddings, id_logits=id_logits,
                          parsing_logits=parsing_logits, visibility=part_visibility(parsing_logits))

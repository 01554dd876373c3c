"""Parsing-guided pooling of the ReID map: one C-dimensional vector per attention map.

[base] BPBreID pools each body part k with a weighted average of F under the part's attention map
A_k = softmax(S)_k (``GlobalWeightedAveragePoolingHead``),

    avg_k = sum_hw(A_k F) / max(sum_hw(A_k), 1e-6),

and the foreground (A_fg = max_k A_k over the K parts, background excluded) with a plain spatial
mean of A_fg F, not divided by the mask's mass (``GlobalAveragePoolingHead``): ``mean_pool``.

[paper] DROP's parsing-guided ReID branch uses "weighted average and max pooling". How the two are
combined is not published; [ours] sums them, ``p_k = avg_k + max_hw(A_k F)``, and pools the
foreground the same way (its average term as chosen by ``foreground_pooling``). ``POOLING`` holds the
three variants the recipes name: ``avg`` (BPBreID's), ``max`` and ``avg+max`` (DROP, [ours] form);
``AVERAGES`` the two average terms, ``weighted`` and ``mean``.

Neither term materialises the N x K x C x HW product of attention and features, which is what
makes BPBreID's head peak at 7-10 GB on a batch of 64 HRNet-W32 maps [ours]:

- the averages are batched matrix products, ``A [N, K, HW] @ F^T [N, HW, C]``;
- the max is ``MaskedMax``, an autograd Function whose forward computes max and argmax in chunks
  under no_grad, each chunk at most ``chunk_elements`` elements of the product (one reused buffer,
  cache-sized on CPU), and saves only the argmax indices ``[N, K, C]``; its backward gathers the
  winning pixels and scatter-adds the gradient into A and F. It is differentiable once (no double
  backward). On CUDA the forward is instead one fused kernel made by torch.compile (product and
  max/argmax in one pass, nothing materialised), when it can be compiled; the chunked loop is the
  fallback.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["AVERAGES", "POOLING", "MaskedMax", "avg_pool", "max_pool", "mean_pool", "pooling_function"]

# Largest slice of the attention x feature product one step of MaskedMax's forward computes, when
# not given. CPU: 2**20 elements (4 MB in float32) stay in cache between the product and its max,
# about 4x faster than 128 MB slices on a 2-core CPU. GPU: 2**26 (256 MB in float32), a few dozen
# steps for a batch of 64 HRNet-W32 maps at 256x128.
CPU_CHUNK_ELEMENTS = 2**20
GPU_CHUNK_ELEMENTS = 2**26
# [base] The least sum_hw(A_k) divides by (BPBreID's clamp), so an attention map that is zero everywhere
# pools to zeros, not NaN.
EPS = 1e-6


def avg_pool(weights: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """[base] Attention-weighted average of the features, as one batched matrix product.

    Args:
        weights: [N, K, HW] non-negative attention maps.
        features: [N, C, HW].

    Returns:
        [N, K, C]: ``sum_hw(weights[n, k] * features[n, :]) / max(sum_hw(weights[n, k]), EPS)``.
    """
    total = torch.bmm(weights.to(features.dtype), features.transpose(1, 2))  # [N, K, C]
    mass = weights.sum(dim=2, keepdim=True, dtype=torch.promote_types(weights.dtype, torch.float32))
    return total / mass.clamp(min=EPS)  # at least float32 (autocast's bmm gives bfloat16/float16)


def mean_pool(weights: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """[base] Spatial mean of the attention-weighted features (BPBreID's foreground pooling).

    Args:
        weights: [N, K, HW] attention maps.
        features: [N, C, HW].

    Returns:
        [N, K, C]: ``sum_hw(weights[n, k] * features[n, :]) / HW``, at least float32.
    """
    total = torch.bmm(weights.to(features.dtype), features.transpose(1, 2))  # [N, K, C]
    return total.to(torch.promote_types(total.dtype, torch.float32)) / weights.shape[2]


def _product_max(weights: torch.Tensor, features: torch.Tensor) -> Any:
    """max and argmax over HW of ``weights[n, k, hw] * features[n, c, hw]``, each [N, K, C].

    Written as the plain broadcast product so that torch.compile turns it into one reduction kernel.
    """
    dtype = torch.promote_types(weights.dtype, features.dtype)
    return (weights.to(dtype)[:, :, None, :] * features.to(dtype)[:, None, :, :]).max(dim=3)


_fused_product_max: Callable | bool | None = None  # compiled on first use on CUDA; False once compiling failed


def _cuda_product_max(weights: torch.Tensor, features: torch.Tensor) -> Any:
    """The fused kernel's result (torch.max's values and indices), or None where torch.compile is not
    usable (a warning, once)."""
    global _fused_product_max
    if _fused_product_max is False:
        return None
    try:
        if not callable(_fused_product_max):
            _fused_product_max = torch.compile(_product_max, dynamic=True)
        return _fused_product_max(weights, features)
    except Exception as error:
        _fused_product_max = False
        warnings.warn(
            f"max pooling falls back to its chunked kernels: torch.compile failed ({error!r:.200})", stacklevel=2
        )
        return None


def _chunk_shape(n: int, k: int, c: int, hw: int, budget: int) -> tuple[int, int, int]:
    """Images, maps and channels per chunk: whole images if they fit, else one image's maps over a
    slice of the channels, else a few maps over one channel."""
    if k * c * hw <= budget:
        return budget // (k * c * hw), k, c
    if k * hw <= budget:
        return 1, k, budget // (k * hw)
    return 1, max(1, budget // hw), 1


class MaskedMax(torch.autograd.Function):
    """``max_hw(weights[n, k, hw] * features[n, c, hw])`` -> [N, K, C], without the full product.

    Forward: the product and its max/argmax over HW, chunk by chunk into one reused buffer of
    ``chunk_elements`` (whole images if they fit, else slices of the channels), under no_grad;
    only the argmax ``[N, K, C]`` (int64) is kept for backward, plus references to both inputs.
    Backward: with i = argmax, ``d/dweights[n, k, i] += g[n, k, c] * features[n, c, i]`` and
    ``d/dfeatures[n, c, i] += g[n, k, c] * weights[n, k, i]``, by gather and scatter_add.

    The computation runs in the promoted dtype of the two inputs (float32 weights and bfloat16
    features under autocast give float32); each gradient comes back in its input's dtype.
    """

    @staticmethod
    def forward(ctx, weights: torch.Tensor, features: torch.Tensor, chunk_elements: int | None = None):
        fused = _cuda_product_max(weights, features) if features.is_cuda and chunk_elements is None else None
        if fused is not None:
            ctx.save_for_backward(weights, features, fused.indices)
            return fused.values
        n, k, hw = weights.shape
        c = features.shape[1]
        if chunk_elements is None:
            chunk_elements = CPU_CHUNK_ELEMENTS if features.device.type == "cpu" else GPU_CHUNK_ELEMENTS
        nb, kb, cb = _chunk_shape(n, k, c, hw, chunk_elements)
        dtype = torch.promote_types(weights.dtype, features.dtype)
        values = torch.empty(n, k, c, dtype=dtype, device=features.device)
        indices = torch.empty(n, k, c, dtype=torch.long, device=features.device)
        buffer = torch.empty(nb * kb * cb * hw, dtype=dtype, device=features.device)  # reused by every chunk
        with torch.no_grad():
            for i in range(0, n, nb):
                for j in range(0, k, kb):
                    w = weights[i : i + nb, j : j + kb, None]  # [n', k', 1, HW]
                    for ch in range(0, c, cb):
                        f = features[i : i + nb, None, ch : ch + cb]  # [n', 1, c', HW]
                        product = buffer[: w.shape[0] * w.shape[1] * f.shape[2] * hw].view(
                            w.shape[0], w.shape[1], f.shape[2], hw
                        )
                        torch.mul(w, f, out=product)
                        chunk_values, chunk_indices = product.max(dim=3)
                        values[i : i + nb, j : j + kb, ch : ch + cb] = chunk_values
                        indices[i : i + nb, j : j + kb, ch : ch + cb] = chunk_indices
        ctx.save_for_backward(weights, features, indices)
        return values

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_values: torch.Tensor):
        weights, features, indices = ctx.saved_tensors
        grad_weights = grad_features = None
        dtype = grad_values.dtype
        if ctx.needs_input_grad[0]:
            features_at = features.transpose(1, 2).gather(1, indices).to(dtype)  # features[n, c, i[n, k, c]]
            grad_weights = torch.zeros(weights.shape, dtype=dtype, device=weights.device)
            grad_weights.scatter_add_(2, indices, grad_values * features_at)
            grad_weights = grad_weights.to(weights.dtype)
        if ctx.needs_input_grad[1]:
            weights_at = weights.gather(2, indices).to(dtype)  # weights[n, k, i[n, k, c]]
            n, c, hw = features.shape
            grad_features = torch.zeros(n, hw, c, dtype=dtype, device=features.device)
            grad_features.scatter_add_(1, indices, grad_values * weights_at)
            grad_features = grad_features.transpose(1, 2).to(features.dtype)
        return grad_weights, grad_features, None


def max_pool(weights: torch.Tensor, features: torch.Tensor, chunk_elements: int | None = None) -> torch.Tensor:
    """Attention-weighted max of the features (``MaskedMax``).

    Args:
        weights: [N, K, HW] attention maps.
        features: [N, C, HW].
        chunk_elements: most elements of the product computed at once in the forward pass
            (None: CPU_CHUNK_ELEMENTS or GPU_CHUNK_ELEMENTS, by the device of ``features``).

    Returns:
        [N, K, C]: ``max_hw(weights[n, k, hw] * features[n, c, hw])``.
    """
    if torch.onnx.is_in_onnx_export():  # a graph without the chunk loop's in-place writes
        return torch.stack([(weights[:, k, None] * features).amax(-1) for k in range(weights.shape[1])], dim=1)
    return MaskedMax.apply(weights, features, chunk_elements)


PoolFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# Recipe key (model.foreground_pooling) -> the average term: weights [N, K, HW], features [N, C, HW] -> [N, K, C].
AVERAGES: dict[str, PoolFn] = {"weighted": avg_pool, "mean": mean_pool}
# Recipe key (model.pooling) -> (uses the average term, uses the max term).
POOLING: dict[str, tuple[bool, bool]] = {"avg": (True, False), "max": (False, True), "avg+max": (True, True)}


def pooling_function(pooling: str, average: str = "weighted") -> PoolFn:
    """The pooling of a ``POOLING`` key with the ``AVERAGES[average]`` term: weights [N, K, HW],
    features [N, C, HW] -> [N, K, C]. ``avg+max`` is the sum of the two terms [ours]."""
    if pooling not in POOLING or average not in AVERAGES:
        raise ValueError(
            f"pooling must be one of {sorted(POOLING)} and average one of {sorted(AVERAGES)}, "
            f"not {pooling!r} and {average!r}"
        )
    use_average, use_max = POOLING[pooling]
    mean = AVERAGES[average]

    def pool(weights: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        if use_average and use_max:
            return mean(weights, features) + max_pool(weights, features)
        return mean(weights, features) if use_average else max_pool(weights, features)

    return pool

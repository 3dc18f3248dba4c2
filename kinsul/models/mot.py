"""Mixture of transformers with shared attention, over transformers' Gemma decoder layers.

Two streams run layer by layer: the backbone (prefix + suffix tokens) with the VLM's weights and the
action expert with its own narrower weights. Per layer each stream projects its own queries/keys/values;
backbone queries attend to backbone keys only, expert queries attend to [view(backbone K/V) ++ expert K/V].
``kv_view`` is the one place where a strategy decides how the expert sees the backbone (as is, detached,
gradient-scaled). Forward values never depend on it; gradients do.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn
from transformers.models.gemma.modeling_gemma import apply_rotary_pos_emb

KVView = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
KVCache = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values (B, kv_heads, L, head_dim)


def identity_view(k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return k, v


def _qkv(layer: nn.Module, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]):
    attn = layer.self_attn
    h = layer.input_layernorm(x)
    shape = (*x.shape[:2], -1, attn.head_dim)
    q = attn.q_proj(h).view(shape).transpose(1, 2)
    k = attn.k_proj(h).view(shape).transpose(1, 2)
    v = attn.v_proj(h).view(shape).transpose(1, 2)
    q, k = apply_rotary_pos_emb(q, k, *rope)
    return q, k, v


def _attend(layer: nn.Module, q, k, v, mask: torch.Tensor) -> torch.Tensor:
    attn = layer.self_attn
    if q.device.type == "cpu" and torch.compiler.is_compiling():
        out = matmul_attention(q, k, v, mask, attn.scaling)
    else:
        # Grouped-query attention inside SDPA: each kv head serves q_heads / kv_heads query heads without copies.
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None], scale=attn.scaling,
                                             enable_gqa=q.shape[1] != k.shape[1])  # fmt: skip
    return attn.o_proj(out.transpose(1, 2).reshape(*q.shape[:1], q.shape[2], -1))


def matmul_attention(q, k, v, mask: torch.Tensor, scale: float) -> torch.Tensor:
    """SDPA's result as two batched matmuls and a softmax, for compiled CPU steps: Inductor fuses the mask, scale
    and softmax into one kernel around them, where CPU SDPA's flash kernel (forward and backward) costs more than
    the whole attention at kinsul's sequence lengths (tens of tokens; `kinsul bench step_speedups`). Grouped
    queries fold into the query length, so each kv head is read once, without copies.

    q (B, H, L, D), k and v (B, KV, S, D), mask (B, L, S) bool, True where a query may attend (never an empty row).
    """
    B, H, L, D = q.shape
    KV, S = k.shape[1], k.shape[2]
    g = H // KV
    scores = (q.reshape(B, KV, g * L, D) @ k.transpose(-1, -2)) * scale
    scores = scores.view(B, KV, g, L, S).masked_fill(~mask[:, None, None], float("-inf"))
    return (scores.view(B, KV, g * L, S).softmax(-1) @ v).view(B, H, L, D)


def _mlp(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return x + layer.mlp(layer.post_attention_layernorm(x))


def _joint_layer(bl, el, xb, xe, rope_b, rope_e, mask_b, mask_e, kv_view: KVView, P: int):
    qb, kb, vb = _qkv(bl, xb, rope_b)
    if xe is not None:
        qe, ke, ve = _qkv(el, xe, rope_e)
        kv, vv = kv_view(kb[:, :, :P], vb[:, :, :P])
        oe = _attend(el, qe, torch.cat([kv, ke], 2), torch.cat([vv, ve], 2), mask_e)
        xe = _mlp(el, xe + oe)
    xb = _mlp(bl, xb + _attend(bl, qb, kb, vb, mask_b))
    return xb, xe


def joint_forward(
    b_layers: nn.ModuleList,
    e_layers: nn.ModuleList | None,
    xb: torch.Tensor,
    xe: torch.Tensor | None,
    rope_b: tuple[torch.Tensor, torch.Tensor],
    rope_e: tuple[torch.Tensor, torch.Tensor] | None,
    mask: torch.Tensor,
    kv_view: KVView = identity_view,
    n_prefix: int | None = None,
    checkpoint: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One pass over both streams; ``mask`` is the (B, Lb + Le, Lb + Le) joint mask.

    The expert reads the backbone's first ``n_prefix`` keys/values only (default: all): the mask hides the
    suffix from it anyway, so this just skips the work. ``checkpoint``: recompute each layer in the backward pass
    instead of keeping its activations (gradient checkpointing: less memory, about a third more compute).
    """
    Lb = xb.shape[1]
    P = Lb if n_prefix is None else n_prefix
    mask_e = torch.cat([mask[:, Lb:, :P], mask[:, Lb:, Lb:]], 2) if xe is not None else None
    mask_b = mask[:, :Lb, :Lb]
    for i, bl in enumerate(b_layers):
        el = e_layers[i] if xe is not None else None
        args = (bl, el, xb, xe, rope_b, rope_e, mask_b, mask_e, kv_view, P)
        if checkpoint and torch.is_grad_enabled():
            xb, xe = torch.utils.checkpoint.checkpoint(_joint_layer, *args, use_reentrant=False)
        else:
            xb, xe = _joint_layer(*args)
    return xb, xe


def backbone_forward(
    layers: nn.ModuleList, x: torch.Tensor, rope, mask: torch.Tensor, cache: KVCache | None = None
) -> tuple[torch.Tensor, KVCache]:
    """Backbone stream alone; returns its output and per-layer K/V (appended to ``cache`` if given).

    ``mask`` is (B, L_new, L_cached + L_new): new tokens may attend to the cached ones.
    """
    out_cache: KVCache = []
    for i, layer in enumerate(layers):
        q, k, v = _qkv(layer, x, rope)
        if cache is not None:
            k, v = torch.cat([cache[i][0], k], 2), torch.cat([cache[i][1], v], 2)
        out_cache.append((k, v))
        x = _mlp(layer, x + _attend(layer, q, k, v, mask))
    return x, out_cache


def expert_forward(
    layers: nn.ModuleList,
    x: torch.Tensor,
    rope,
    cache: KVCache,
    mask: torch.Tensor,
    kv_view: KVView = identity_view,
) -> torch.Tensor:
    """Expert stream reading a cached backbone prefix; ``mask`` is (B, Le, L_cached + Le)."""
    for layer, (kb, vb) in zip(layers, cache, strict=True):
        q, k, v = _qkv(layer, x, rope)
        kv, vv = kv_view(kb, vb)
        x = _mlp(layer, x + _attend(layer, q, torch.cat([kv, k], 2), torch.cat([vv, v], 2), mask))
    return x

"""The action expert: a Gemma-style transformer with the backbone's depth and attention geometry (layers,
heads, kv heads, head_dim) but its own, narrower width, reading noisy action tokens and the flow time."""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers import GemmaConfig
from transformers.models.gemma.modeling_gemma import GemmaDecoderLayer, GemmaRMSNorm, GemmaRotaryEmbedding


def time_embedding(
    t: torch.Tensor, dim: int, min_period: float = 4e-3, max_period: float = 4.0
) -> torch.Tensor:
    """Sinusoidal embedding of t in [0, 1], periods spread geometrically (as in pi0)."""
    fraction = torch.linspace(0.0, 1.0, dim // 2, device=t.device, dtype=torch.float32)
    period = min_period * (max_period / min_period) ** fraction
    angle = 2 * math.pi * t[:, None].float() / period[None]
    return torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1)


class ActionExpert(nn.Module):
    def __init__(self, backbone_text: GemmaConfig, width: int, mlp: int, action_dim: int, state_dim: int,
                 horizon: int, state_token: bool = True):  # fmt: skip
        super().__init__()
        self.config = GemmaConfig(
            vocab_size=2, hidden_size=width, intermediate_size=mlp,
            num_hidden_layers=backbone_text.num_hidden_layers, num_attention_heads=backbone_text.num_attention_heads,
            num_key_value_heads=backbone_text.num_key_value_heads, head_dim=backbone_text.head_dim,
            rope_parameters=backbone_text.rope_parameters, bos_token_id=None, eos_token_id=None, pad_token_id=None,
        )  # fmt: skip
        self.horizon, self.action_dim, self.state_dim = horizon, action_dim, state_dim
        self.layers = nn.ModuleList(
            GemmaDecoderLayer(self.config, i) for i in range(self.config.num_hidden_layers)
        )
        self.norm = GemmaRMSNorm(width, eps=self.config.rms_norm_eps)
        self.rotary = GemmaRotaryEmbedding(self.config)
        self.action_in = nn.Linear(action_dim, width)
        self.time_mlp_in = nn.Linear(2 * width, width)
        self.time_mlp_out = nn.Linear(width, width)
        self.state_in = nn.Linear(state_dim, width) if state_token else None
        self.action_out = nn.Linear(width, action_dim)

    @property
    def n_tokens(self) -> int:
        return self.horizon + (1 if self.state_in is not None else 0)

    def embed(self, x_t: torch.Tensor, t: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """Tokens [state?, a_1 .. a_H]: each noisy action fused with the time embedding by an MLP (pi0)."""
        a = self.action_in(x_t)
        te = time_embedding(t, a.shape[-1]).to(a.dtype)[:, None].expand_as(a)
        a = self.time_mlp_out(nn.functional.silu(self.time_mlp_in(torch.cat([a, te], dim=-1))))
        if self.state_in is None:
            return a
        return torch.cat([self.state_in(state)[:, None], a], dim=1)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """Velocity prediction for the H action tokens."""
        return self.action_out(self.norm(h[:, -self.horizon :]))

"""Every attention mask of the VLA, built in one place.

The joint sequence is [prefix | suffix tokens | expert tokens]:
- prefix (image + instruction) attends bidirectionally to valid prefix tokens only (causally for a family
  trained that way);
- suffix tokens (FAST action tokens, or a VLM answer) attend to the prefix and causally to each other;
- expert tokens attend to the prefix and to each other, never to the suffix tokens (at inference they do
  not exist);
- no prefix or suffix token attends to the expert, so the prefix can be computed once and cached.
Rows of padding tokens attend to themselves only, which keeps softmax finite; their outputs are unused.
"""

from __future__ import annotations

import torch


def joint_mask(prefix_valid: torch.Tensor, suffix_valid: torch.Tensor | None, n_expert: int,
               causal_prefix: bool = False) -> torch.Tensor:  # fmt: skip
    """(B, T, T) bool, True where a query row may attend to a key column; T = P + S + E. ``causal_prefix``: the
    prefix attends causally within itself (a backbone trained without a prefix-LM mask, e.g. Idefics3)."""
    B, P = prefix_valid.shape
    S = 0 if suffix_valid is None else suffix_valid.shape[1]
    E = n_expert
    T = P + S + E
    dev = prefix_valid.device
    mask = torch.zeros(B, T, T, dtype=torch.bool, device=dev)
    pcol = prefix_valid[:, None, :]  # (B, 1, P)
    mask[:, :P, :P] = pcol & prefix_valid[:, :, None]
    if causal_prefix:
        mask[:, :P, :P] &= torch.tril(torch.ones(P, P, dtype=torch.bool, device=dev))
    if S:
        causal = torch.tril(torch.ones(S, S, dtype=torch.bool, device=dev))
        rows = suffix_valid[:, :, None]
        mask[:, P : P + S, :P] = pcol & rows
        mask[:, P : P + S, P : P + S] = causal[None] & suffix_valid[:, None, :] & rows
    if E:
        mask[:, P + S :, :P] = pcol.expand(B, E, P)
        mask[:, P + S :, P + S :] = True
    idx = torch.arange(T, device=dev)
    mask[:, idx, idx] |= ~mask.any(dim=-1)  # padding rows: self only
    return mask


def positions(prefix_valid: torch.Tensor, suffix_valid: torch.Tensor | None, n_expert: int):
    """RoPE positions (1-indexed, as PaliGemma): padding does not advance them; the expert's positions
    follow the prefix and do not depend on the suffix tokens."""
    pos_p = torch.cumsum(prefix_valid.long(), dim=1)
    n_prefix = pos_p[:, -1:]
    pos_s = None if suffix_valid is None else n_prefix + torch.cumsum(suffix_valid.long(), dim=1)
    pos_e = n_prefix + 1 + torch.arange(n_expert, device=prefix_valid.device)[None]
    return pos_p, pos_s, pos_e

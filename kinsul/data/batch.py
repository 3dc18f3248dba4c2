"""The batch contract between data and models: typed dataclasses with documented shapes."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch


@dataclass
class Observation:
    images: torch.Tensor  # (B, H, W, 3) uint8 RGB
    state: torch.Tensor  # (B, S) float32 proprioception
    text_ids: torch.Tensor  # (B, L) int64: <bos> + instruction/question words, right-padded with <pad>
    text_mask: torch.Tensor  # (B, L) bool, True on real tokens

    def to(self, device) -> Observation:
        return type(self)(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def __len__(self) -> int:
        return self.images.shape[0]

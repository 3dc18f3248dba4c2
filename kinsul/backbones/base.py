"""The backbone interface: one adapter per VLM family over a transformers model, so the VLA, the strategies and
the losses never look inside a family's module tree.

An adapter is a plain object beside the model (not a module): the model stays ``vla.backbone`` with its own
parameter names, so checkpoints and ``state_dict`` keys are the family's own. A family registers by its
``config.json`` ``model_type``; adding one is one file plus one line in ``FAMILIES``.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn


class BackboneError(ValueError):
    """A pretrained backbone folder that is missing or incompatible."""


class BackboneAdapter:
    """What the VLA needs from a VLM, per family.

    - ``lm``: the decoder (``embed_tokens``, ``layers``, ``norm``, ``rotary_emb``); the action expert reads the
      keys/values of ``lm.layers`` through the strategy's ``kv_view``;
    - ``embed_prefix``: images + prompt ids -> prefix embeddings in the family's layout;
    - ``parts``: named parameter groups for strategies (vision tower, connector, language model, embeddings, head);
    - ``logits``: the LM head for FAST and VLM losses.
    """

    family: ClassVar[str]
    model_type: ClassVar[str]  # config.json's model_type
    causal_prefix: ClassVar[bool]  # True: the prompt attends causally (Llama-style VLMs); False: prefix-LM

    def __init__(self, model: nn.Module):
        self.model = model

    # -- the family's module tree ---------------------------------------------------------------------
    @property
    def lm(self) -> nn.Module:
        raise NotImplementedError

    @property
    def text_config(self):
        return self.model.config.text_config

    @property
    def image_size(self) -> int:
        return self.model.config.vision_config.image_size

    @property
    def image_token_id(self) -> int:
        return self.model.config.image_token_id

    @property
    def vocab_size(self) -> int:
        return self.lm.embed_tokens.num_embeddings

    def vision_modules(self) -> tuple[nn.Module, nn.Module]:
        """(vision tower, connector): everything that makes image tokens."""
        raise NotImplementedError

    @property
    def head(self) -> nn.Module:
        return self.model.lm_head

    @property
    def tied_head(self) -> bool:
        return self.head.weight is self.lm.embed_tokens.weight

    def parts(self) -> dict[str, list[nn.Parameter]]:
        """Each backbone parameter in exactly one named part (a tied head is counted with the embeddings)."""
        tower, connector = self.vision_modules()
        parts = {
            "vision_tower": list(tower.parameters()),
            "connector": list(connector.parameters()),
            "embeddings": list(self.lm.embed_tokens.parameters()),
            "language_model": [*self.lm.layers.parameters(), *self.lm.norm.parameters()],
            "head": [] if self.tied_head else list(self.head.parameters()),
        }
        return parts

    # -- computation -----------------------------------------------------------------------------------
    def image_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) normalised pixels -> (B, N, d) image tokens in the decoder's embedding space."""
        raise NotImplementedError

    def embed_prefix(
        self, pixels: torch.Tensor, text_ids: torch.Tensor, text_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prefix embeddings (B, P, d) and their validity (B, P) in the family's layout."""
        raise NotImplementedError

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.head(self.lm.norm(hidden))

    def resize_vocab(self, n: int) -> None:
        """Grow the embedding table (and an untied head) to ``n`` rows: FAST tokens as added tokens."""
        self.model.resize_token_embeddings(n, mean_resizing=False)


def count(params) -> int:
    return sum(p.numel() for p in params)

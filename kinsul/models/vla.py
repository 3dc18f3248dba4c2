"""The VLA: backbone + action expert + the token spaces they share. No training-loop code lives here.

Training runs one joint pass (``forward``); inference runs the backbone once per chunk and reuses its
key/value cache for every Euler step of the expert (``sample_actions``) or every decoded FAST token
(``generate_fast``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler import record_function

from kinsul.backbones.base import BackboneAdapter
from kinsul.data.batch import Observation
from kinsul.models.expert import ActionExpert
from kinsul.models.flow import euler_sample
from kinsul.models.masks import joint_mask, positions
from kinsul.models.mot import KVCache, KVView, backbone_forward, expert_forward, identity_view, joint_forward
from kinsul.tokenizers.text import TextTokenizer


@dataclass
class VLAOutput:
    suffix_logits: torch.Tensor | None  # (B, S, V): position j predicts suffix token j + 1
    velocity: torch.Tensor | None  # (B, H, A)
    # (B, P + S, d) the backbone's last hidden states (before the final norm)
    hidden: torch.Tensor | None = None
    n_prefix: int = 0  # P: image + text tokens at the front of ``hidden``
    # (B, V): the prefix's last token predicting suffix token 0, for codecs whose suffix has no leading context
    # token (n_context = 0: a processor's layout); None for the world codec, whose <sep> is context
    first_logits: torch.Tensor | None = None


class VLA(nn.Module):
    def __init__(self, backbone: nn.Module, expert: ActionExpert | None, tokenizer: TextTokenizer,
                 adapter: BackboneAdapter):  # fmt: skip
        super().__init__()
        self.backbone = backbone  # the family's transformers model, with its own parameter names
        self.expert = expert
        self.tokenizer = tokenizer  # the codec: kinsul's world tokenizer or the checkpoint's own processor
        self.adapter = adapter  # a plain object: the family's view of ``backbone``
        self.gradient_checkpointing = False  # trainer.gradient_checkpointing: recompute layers in backward
        self.backbone_calls = 0  # prefix encodings at inference; tests check one per chunk
        self.compile_layers = False  # trainer.compile: training steps' joint layer pass through Inductor
        # Image normalisation, as an image processor's image_mean/std: SigLIP's default maps to [-1, 1].
        self.register_buffer("image_mean", torch.full((1, 3, 1, 1), 0.5), persistent=False)
        self.register_buffer("image_std", torch.full((1, 3, 1, 1), 0.5), persistent=False)

    def set_image_normalization(
        self, mean: tuple[float, float, float], std: tuple[float, float, float]
    ) -> None:
        self.image_mean.copy_(torch.tensor(mean).view(1, 3, 1, 1))
        self.image_std.copy_(torch.tensor(std).view(1, 3, 1, 1))

    # -- building blocks -----------------------------------------------------------------------------
    @property
    def lm(self) -> nn.Module:
        return self.adapter.lm

    def vision_parameters(self) -> list[nn.Parameter]:
        """The vision tower's and the connector's parameters: everything that makes image tokens."""
        parts = self.adapter.parts()
        return [*parts["vision_tower"], *parts["connector"]]

    def pixels(self, images: torch.Tensor) -> torch.Tensor:
        """(B, H, W, 3) uint8 RGB -> (B, 3, S, S) normalised as the image processor does, resized to the vision
        tower's side S where the data's differs (bicubic, antialiased: PIL's resampling, up to rounding)."""
        x = images.permute(0, 3, 1, 2).float() / 255.0
        size = self.adapter.image_size
        if x.shape[-1] != size or x.shape[-2] != size:
            x = F.interpolate(x, size=(size, size), mode="bicubic", antialias=True, align_corners=False)
        return (x - self.image_mean) / self.image_std

    def image_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """(B, H, W, 3) uint8 RGB -> (B, N_patches, d) image tokens in the decoder's embedding space."""
        return self.adapter.image_tokens(self.pixels(images))

    def embed_prefix(self, obs: Observation) -> tuple[torch.Tensor, torch.Tensor]:
        """The prefix embeddings (B, P, d) in the family's layout and their validity (B, P)."""
        return self.adapter.embed_prefix(self.pixels(obs.images), obs.text_ids, obs.text_mask)

    def mask(self, prefix_valid, suffix_valid, n_expert: int) -> torch.Tensor:
        return joint_mask(prefix_valid, suffix_valid, n_expert, causal_prefix=self.adapter.causal_prefix)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.adapter.logits(hidden)

    def last_prefix_hidden(self, hidden: torch.Tensor, prefix_valid: torch.Tensor) -> torch.Tensor:
        """(B, d): each row's last valid prefix token (prefixes are right-padded)."""
        last = prefix_valid.long().cumsum(1).argmax(1)
        return hidden[torch.arange(len(hidden), device=hidden.device), last]

    # -- training: one joint pass --------------------------------------------------------------------
    def forward(
        self,
        obs: Observation,
        suffix_ids: torch.Tensor | None = None,
        suffix_mask: torch.Tensor | None = None,
        x_t: torch.Tensor | None = None,
        t: torch.Tensor | None = None,
        kv_view: KVView = identity_view,
    ) -> VLAOutput:
        """Backbone over [prefix | suffix tokens], expert over noisy actions ``x_t`` at time ``t``. The
        record_function scopes name the parts in a profile (`kinsul bench step_profile`); free otherwise."""
        with record_function("vla.prefix"):  # vision tower, connector, text embeddings
            xp, pv = self.embed_prefix(obs)
        xb = xp if suffix_ids is None else torch.cat([xp, self.lm.embed_tokens(suffix_ids).to(xp.dtype)], 1)
        use_expert = x_t is not None
        if use_expert and self.expert is None:
            raise ValueError("this VLA has no action expert (a pi0-FAST model): it cannot predict velocities")
        n_e = self.expert.n_tokens if use_expert else 0
        mask = self.mask(pv, suffix_mask, n_e)
        pos_p, pos_s, pos_e = positions(pv, suffix_mask, n_e)
        pos_b = pos_p if pos_s is None else torch.cat([pos_p, pos_s], 1)
        rope_b = self.lm.rotary_emb(xb, pos_b)
        xe = rope_e = None
        if use_expert:
            xe = self.expert.embed(x_t, t, obs.state)
            rope_e = self.expert.rotary(xe, pos_e)
        with record_function("vla.layers"):  # backbone and expert layers, jointly
            # compiled for training steps only: evaluation would compile other graphs for a few calls each
            compiled = self.compile_layers and torch.is_grad_enabled()
            layers = compiled_joint_forward() if compiled else joint_forward
            hb, he = layers(self.lm.layers, self.expert.layers if use_expert else None, xb, xe, rope_b, rope_e,
                            mask, kv_view, n_prefix=xp.shape[1],
                            checkpoint=self.gradient_checkpointing and self.training)  # fmt: skip
        P = xp.shape[1]
        logits = first = None
        if suffix_ids is not None:
            logits = self.logits(hb[:, P:])
            if self.tokenizer.n_context == 0:
                first = self.logits(self.last_prefix_hidden(hb[:, :P], pv))
        return VLAOutput(logits, self.expert.head(he) if use_expert else None, hb, P, first)

    # -- inference: the backbone once per chunk ------------------------------------------------------
    def encode_prefix(self, obs: Observation) -> tuple[KVCache, torch.Tensor]:
        self.backbone_calls += 1
        xp, pv = self.embed_prefix(obs)
        pos_p, _, _ = positions(pv, None, 0)
        h, cache = backbone_forward(self.lm.layers, xp, self.lm.rotary_emb(xp, pos_p), self.mask(pv, None, 0))
        self._last_prefix = h, pv  # generate_fast's first token, for a codec without a leading <sep>
        return cache, pv

    def sample_actions(
        self, obs: Observation, noise: torch.Tensor | None = None, steps: int = 10
    ) -> torch.Tensor:
        """A chunk (B, H, A) by Euler integration of the expert's velocity over a cached prefix."""
        ex = self.expert
        if ex is None:
            raise ValueError("this VLA has no action expert: decode actions with generate_fast")
        cache, pv = self.encode_prefix(obs)
        P = pv.shape[1]
        mask = self.mask(pv, None, ex.n_tokens)[:, P:, :]
        _, _, pos_e = positions(pv, None, ex.n_tokens)
        if noise is None:
            noise = torch.randn(len(obs), ex.horizon, ex.action_dim, device=pv.device)

        rope: list = []  # positions are the same at every step: rotary tables once per chunk

        def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            xe = ex.embed(x, t, obs.state)
            if not rope:
                rope.append(ex.rotary(xe, pos_e))
            return ex.head(expert_forward(ex.layers, xe, rope[0], cache, mask))

        return euler_sample(velocity, noise, steps)

    def generate_fast(self, obs: Observation, max_len: int, stop_at_eos: bool = True) -> list[list[int]]:
        """Greedy autoregressive FAST tokens after the prefix (one backbone step per token, KV-cached).

        Returns FAST ids (without the vocabulary offset) per example, stopped at <eos>.
        """
        tok = self.tokenizer
        cache, pv = self.encode_prefix(obs)
        B = len(obs)
        allowed = torch.full((tok.vocab_size,), float("-inf"), device=pv.device)
        allowed[tok.action_offset : tok.action_offset + tok.n_action_tokens] = 0.0
        allowed[tok.eos_id] = 0.0
        n_prefix = pv.sum(1, keepdim=True)
        valid = pv
        out = torch.empty(B, 0, dtype=torch.long, device=pv.device)
        done = torch.zeros(B, dtype=torch.bool, device=pv.device)
        if tok.n_context:  # the world codec: <sep> opens the suffix
            current, fed = torch.full((B, 1), tok.sep_id, dtype=torch.long, device=pv.device), 0
        else:  # a processor's layout: the prefix's last token predicts the first FAST token
            h, _ = self._last_prefix
            current, fed = None, -1
            logits = self.logits(self.last_prefix_hidden(h, pv))
        for step in range(max_len):
            if current is not None:
                x = self.lm.embed_tokens(current)
                valid = torch.cat([valid, torch.ones(B, 1, dtype=torch.bool, device=pv.device)], 1)
                rope = self.lm.rotary_emb(x, n_prefix + 1 + step + fed)
                h, cache = backbone_forward(self.lm.layers, x, rope, valid[:, None, :], cache)
                logits = self.logits(h[:, -1])
            nxt = (logits + allowed).argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, tok.eos_id), nxt)
            out = torch.cat([out, nxt[:, None]], 1)
            done |= nxt == tok.eos_id
            if stop_at_eos and done.all():
                break
            current = nxt[:, None]
        result = []
        for row in out.tolist():
            ids = row[: row.index(tok.eos_id)] if tok.eos_id in row else row
            result.append([i - tok.action_offset for i in ids])
        return result


@functools.cache
def compiled_joint_forward():
    """``joint_forward`` through torch.compile (Inductor), one per process. Shapes change with a batch's text and
    FAST lengths, so a dimension goes dynamic at its first change (dynamic=None) instead of compiling each length
    anew; the modules are inputs of the graph, so models of the same architecture share it."""
    return torch.compile(joint_forward, dynamic=None)


def target_logits(logits: torch.Tensor, first_logits: torch.Tensor | None = None) -> torch.Tensor:
    """(B, S - n_context, V): the logits predicting each target token of the suffix. Without ``first_logits``
    the suffix opens with one context token (<sep>) and position j predicts token j + 1; with them the prefix's
    last token predicts token 0."""
    return logits[:, :-1] if first_logits is None else torch.cat([first_logits[:, None], logits[:, :-1]], 1)


def token_loss(logits: torch.Tensor, suffix_ids: torch.Tensor, suffix_mask: torch.Tensor,
               first_logits: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """Next-token cross-entropy on the suffix's target tokens (see ``target_logits``)."""
    n_context = 1 if first_logits is None else 0
    target, valid = suffix_ids[:, n_context:], suffix_mask[:, n_context:]
    return F.cross_entropy(target_logits(logits, first_logits)[valid].float(), target[valid])


def flow_loss(velocity: torch.Tensor, target: torch.Tensor, pad: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared velocity error over the chunk; padded steps (past an episode's end) are ignored."""
    err = (velocity.float() - target.float()).pow(2).mean(-1)
    if pad is None:
        return err.mean()
    keep = (~pad).float()
    return (err * keep).sum() / keep.sum().clamp_min(1.0)

"""Decoding action chunks with a strategy's own decoding, and scoring them against demonstrations."""

from __future__ import annotations

import torch

from kinsul.data.batch import Observation
from kinsul.data.tensors import RobotBatch
from kinsul.models.vla import VLA
from kinsul.tokenizers.fast import FastTokenizer

VELOCITY = slice(0, 2)  # the (vx, vy) channels of an action; the third is the grip command


def chunk_metrics(samples: torch.Tensor, demo: torch.Tensor, pad: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-frame errors of ``samples`` (k, B, H, A), k chunks per frame, against ``demo`` (B, H, A) over the
    steps that ``pad`` (B, H) does not mark as past the episode's end:

    - ``action_mse``: the first sample, every channel (one draw: includes the policy's own sampling spread);
    - ``velocity_mse``: the expected chunk (mean of the k samples), velocity channels only: neither a wider
      sampler nor the grip channel, which needs no grounding, moves it.
    """
    keep = (~pad).to(demo.dtype)[..., None]
    n = keep.sum((1, 2))

    def mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return ((a - b) ** 2 * keep).sum((1, 2)) / (n * a.shape[-1])

    return {
        "action_mse": mse(samples[0], demo),
        "velocity_mse": mse(samples.mean(0)[..., VELOCITY], demo[..., VELOCITY]),
    }


def repeat_obs(obs: Observation, k: int) -> Observation:
    """Each observation k times, sample-major: rows [0, B) are draw 0, [B, 2B) draw 1, ..."""
    return Observation(*(t.repeat(k, *([1] * (t.dim() - 1))) for t in (obs.images, obs.state, obs.text_ids,
                                                                         obs.text_mask)))  # fmt: skip


@torch.no_grad()
def chunk_errors(vla: VLA, fast: FastTokenizer, decoding: str, batch: RobotBatch, flow_steps: int,
                 max_fast_len: int, seed: int, samples: int = 1):  # fmt: skip
    """Per-frame errors (``chunk_metrics``) of the strategy's own decoding on a batch of demonstrations, and,
    for FAST decoding, which sequences were invalid. Flow draws ``samples`` chunks per frame with noise seeded
    by ``seed`` (the same at every validation, so numbers compare); greedy FAST decoding has one chunk."""
    invalid = None
    if decoding == "flow":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            chunks = vla.sample_actions(repeat_obs(batch.obs, samples), steps=flow_steps)
        chunks = chunks.view(samples, len(batch.obs), *chunks.shape[1:])
    else:
        chunk, invalid = decode_fast_chunks(vla, fast, batch.obs, max_fast_len)
        chunks = chunk[None]
    return chunk_metrics(chunks.float(), batch.actions, batch.action_pad), invalid


@torch.no_grad()
def decode_fast_chunks(vla: VLA, fast: FastTokenizer, obs: Observation, max_len: int):
    """pi0-FAST actions: greedy tokens -> chunk; invalid sequences fall back to zeros and are flagged."""
    chunks, invalid = [], []
    for ids in vla.generate_fast(obs, max_len=max_len + 1):
        chunk, ok = fast.decode(ids)
        chunks.append(torch.from_numpy(chunk) if ok else torch.zeros(fast.horizon, fast.action_dim))
        invalid.append(not ok)
    device = obs.images.device
    return torch.stack(chunks).to(device), torch.tensor(invalid, device=device)

"""Inference latency per action chunk, measured the same way for both decodings in one process."""

from __future__ import annotations

import statistics
import time

import torch

from kinsul.models.vla import VLA

FAST_TOKENS = 14  # the mean FAST length of KinsulWorld chunks (H = 10, scale 10); forced when timing pi0-FAST


def median_ms(fn, warmup: int = 3, repeats: int = 10) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


@torch.inference_mode()
def chunk_latency(vla: VLA, obs, flow_steps: int, fast_tokens: int, repeats: int) -> dict[str, float]:
    """speed/chunk_ms_flow (backbone once + Euler steps of the expert) and speed/chunk_ms_fast (pi0-FAST,
    ``fast_tokens`` tokens forced), batch 1, median of ``repeats`` after warm-up; plus backbone passes."""
    out: dict[str, float] = {}
    if vla.expert is not None:
        calls = vla.backbone_calls
        vla.sample_actions(obs, steps=flow_steps)
        out["speed/backbone_passes_flow"] = float(vla.backbone_calls - calls)
        out["speed/chunk_ms_flow"] = median_ms(
            lambda: vla.sample_actions(obs, steps=flow_steps), repeats=repeats
        )
    out["speed/chunk_ms_fast"] = median_ms(lambda: vla.generate_fast(obs, fast_tokens, stop_at_eos=False),
                                           repeats=repeats)  # fmt: skip
    out["speed/backbone_passes_fast"] = float(fast_tokens + 1)
    return out

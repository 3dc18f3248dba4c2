"""Parameters and training-state memory per strategy at real sizes, built on the meta device (no weights are
allocated): a PaliGemma-3B-shaped and a SmolVLM-500M-shaped backbone, each with a pi0-sized action expert."""

from __future__ import annotations

import torch

from kinsul.backbones import FAMILIES
from kinsul.backbones.base import count
from kinsul.models.expert import ActionExpert
from kinsul.models.vla import VLA
from kinsul.strategies import create

# Published shapes: PaliGemma-3B = SigLIP So400m/14 at 224 + Gemma-2B; SmolVLM-500M = SigLIP-B/16 at 512 with a
# pixel shuffle of 4 + SmolLM2-360M. Experts as pi0's (Gemma-300M: width 1024, MLP 4096) and half that.
REAL_SHAPES = {
    "paligemma-3b": ("paligemma", dict(v_hidden=1152, v_layers=27, v_heads=16, v_mlp=4304, patch=14, t_hidden=2048,
                                       t_layers=18, t_heads=8, t_kv=1, head_dim=256, t_mlp=16384),
                     257_152, 224, {}, (1024, 4096)),
    "smolvlm-500m": ("idefics3", dict(v_hidden=768, v_layers=12, v_heads=12, v_mlp=3072, patch=16, t_hidden=960,
                                      t_layers=32, t_heads=15, t_kv=5, head_dim=64, t_mlp=2560),
                     49_280, 512, {"scale_factor": 4}, (512, 2048)),
}  # fmt: skip
STRATEGIES = ("naive", "frozen", "stop_grad", "ki", "pi0_fast")
GIB = 2**30


def meta_vla(name: str, with_expert: bool = True) -> VLA:
    family, dims, vocab, image, extra, (width, mlp) = REAL_SHAPES[name]
    with torch.device("meta"):
        model = FAMILIES[family].build(dims, vocab, image, vocab - 1, **extra)
        adapter = FAMILIES[family](model)
        expert = ActionExpert(adapter.text_config, width, mlp, 32, 32, 50) if with_expert else None
        return VLA(model, expert, None, adapter)


def training_memory(name: str) -> list[dict]:
    """Per strategy: parameters that train, and fp32 weights + gradients + AdamW moments in GiB (activations
    excluded: they depend on batch, sequence and checkpointing). bf16-mixed keeps fp32 master weights, so the
    same; frozen and stop-gradient strategies hold no backbone gradients or optimizer state."""
    rows = []
    for s in STRATEGIES:
        strategy = create(s, {})
        vla = meta_vla(name, strategy.needs_expert)
        total = count(vla.parameters())
        trainable = sum(count(g.params) for g in strategy.param_groups(vla))
        parts = vla.adapter.parts()
        rows.append({"model": name, "strategy": s, "params_M": total / 1e6, "trainable_M": trainable / 1e6,
                     "backbone_trainable_M": (trainable - (count(vla.expert.parameters()) if vla.expert and
                                              strategy.needs_expert else 0)) / 1e6,
                     "vision_M": (count(parts["vision_tower"]) + count(parts["connector"])) / 1e6,
                     "weights_GiB": total * 4 / GIB, "grads_GiB": trainable * 4 / GIB,
                     "adamw_GiB": trainable * 8 / GIB, "train_state_GiB": (total + 3 * trainable) * 4 / GIB})  # fmt: skip
    return rows


def real_size_memory() -> dict:
    rows = [r for name in REAL_SHAPES for r in training_memory(name)]
    pg = {r["strategy"]: r for r in rows if r["model"] == "paligemma-3b"}
    return {"value": round(pg["ki"]["train_state_GiB"] / pg["stop_grad"]["train_state_GiB"], 2), "unit": "x",
            "command": "kinsul bench real_size_memory",
            "goal": "stop_grad and frozen hold no backbone gradients or optimizer state (value: ki / stop_grad "
                    "training state, PaliGemma-3B shape)",
            "ok": pg["stop_grad"]["backbone_trainable_M"] == 0 and pg["frozen"]["backbone_trainable_M"] == 0,
            "table": rows}  # fmt: skip

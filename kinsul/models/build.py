"""Build a VLA from configs: backbone from a size preset (or a local pretrained folder) plus a fresh expert."""

from __future__ import annotations

from dataclasses import dataclass

from kinsul.backbones import FAMILIES
from kinsul.models.backbone import build_backbone, load_backbone
from kinsul.models.config import ModelConfig
from kinsul.models.expert import ActionExpert
from kinsul.models.vla import VLA


@dataclass(frozen=True)
class DataSpec:
    """What the data promises the model; checked against the dataset at build time."""

    image_size: int
    action_dim: int
    state_dim: int
    horizon: int


class ShapeMismatchError(ValueError):
    pass


def check_data_spec(model_spec: DataSpec, data_spec: DataSpec, source: str = "the dataset") -> None:
    diffs = [
        f"{name}: model {getattr(model_spec, name)} vs {source} {getattr(data_spec, name)}"
        for name in ("image_size", "action_dim", "state_dim", "horizon")
        if getattr(model_spec, name) != getattr(data_spec, name)
    ]
    if diffs:
        raise ShapeMismatchError("the model does not match the data: " + "; ".join(diffs))


def build_vla(cfg: ModelConfig, tokenizer, spec: DataSpec, with_expert: bool = True) -> VLA:
    """``tokenizer`` is the codec (``kinsul.backbones.codecs``): the world tokenizer or a folder's processor."""
    if cfg.pretrained_path:
        backbone, adapter = load_backbone(cfg.pretrained_path, tokenizer, spec.image_size)
    else:
        backbone = build_backbone(cfg, tokenizer.vocab_size, spec.image_size, tokenizer.image_id)
        adapter = FAMILIES[cfg.family](backbone)
    expert = None
    if with_expert:
        d = cfg.dims
        # the expert's geometry (layers, heads, kv heads, head dim, RoPE) is the backbone's; its width its own
        expert = ActionExpert(adapter.text_config, d["e_hidden"], d["e_mlp"], spec.action_dim, spec.state_dim,
                              spec.horizon, cfg.state_token)  # fmt: skip
    vla = VLA(backbone, expert, tokenizer, adapter)
    # a processor's normalisation wins over the config's (which is the world VLM's)
    mean = tokenizer.image_mean or tuple(cfg.image_mean)
    std = tokenizer.image_std or tuple(cfg.image_std)
    vla.set_image_normalization(tuple(mean), tuple(std))
    vla.spec = spec
    return vla

"""Build a VLA from configs: backbone from a size preset (or a local pretrained folder) plus a fresh expert."""

from __future__ import annotations

from dataclasses import dataclass

from kinsul.models.backbone import build_backbone, load_backbone
from kinsul.models.config import ModelConfig
from kinsul.models.expert import ActionExpert
from kinsul.models.vla import VLA
from kinsul.tokenizers.text import TextTokenizer


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


def build_vla(cfg: ModelConfig, tokenizer: TextTokenizer, spec: DataSpec, with_expert: bool = True) -> VLA:
    if cfg.pretrained_path:
        backbone = load_backbone(cfg.pretrained_path, tokenizer.vocab_size, spec.image_size)
    else:
        backbone = build_backbone(cfg, tokenizer.vocab_size, spec.image_size, tokenizer.image_id)
    expert = None
    if with_expert:
        d = cfg.dims
        expert = ActionExpert(backbone.config.text_config, d["e_hidden"], d["e_mlp"], spec.action_dim,
                              spec.state_dim, spec.horizon, cfg.state_token)  # fmt: skip
    vla = VLA(backbone, expert, tokenizer)
    vla.set_image_normalization(tuple(cfg.image_mean), tuple(cfg.image_std))
    vla.spec = spec
    return vla

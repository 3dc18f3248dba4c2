"""Run assembly, shared by training, evaluation and benchmarks: from a config, the tokenizers, the data spec, the
datasets (generated if missing) and the VLA starting from the pretrained VLM."""

from __future__ import annotations

import dataclasses

from kinsul.config.schema import KinsulConfig
from kinsul.data import store
from kinsul.data.fast_cache import fast_tokenizer
from kinsul.fields import config_hash
from kinsul.models.backbone import folder_codec
from kinsul.models.build import DataSpec, build_vla, check_data_spec
from kinsul.runs import pretrained
from kinsul.strategies.base import Strategy
from kinsul.tokenizers.fast import FastTokenizer
from kinsul.tokenizers.text import TextTokenizer


def world_tokenizer(cfg: KinsulConfig) -> TextTokenizer:
    return TextTokenizer.for_world(cfg.data.loc_bins, cfg.model.fast_vocab_size)


def make_tokenizer(cfg: KinsulConfig):
    """The codec for the config's backbone: a user folder's own processor (or the world tokenizer for a bare
    folder whose vocabulary fits it); kinsul's own VLMs use the world tokenizer."""
    if cfg.model.pretrained_path:
        return folder_codec(cfg.model.pretrained_path, cfg.model, world_tokenizer(cfg))
    return world_tokenizer(cfg)


def make_fast_tokenizer(cfg: KinsulConfig) -> FastTokenizer:
    return fast_tokenizer(cfg, cfg.model.fast_scale, cfg.model.fast_vocab_size)


def data_spec(cfg: KinsulConfig) -> DataSpec:
    """What the model is built for: the robot source's state and action sizes (known before its frames are
    made), the world's image size and the config's chunk horizon."""
    state_dim, action_dim = store.kind_of(cfg, "robot").dims(cfg)
    return DataSpec(cfg.world.image_size, action_dim, state_dim, cfg.data.chunk_size)


def run_name(cfg: KinsulConfig) -> str:
    """The default name hashes what defines the run, not its budget or where it runs and logs (what a resume may
    change: trainer.max_steps, threads, runs_dir, tracking), so `--resume` with a new budget finds its run."""
    if cfg.trainer.run_name:
        return cfg.trainer.run_name
    t = dataclasses.replace(cfg.trainer, max_steps=1, threads=0, runs_dir="")
    defining = dataclasses.asdict(dataclasses.replace(cfg, trainer=t, tracking=type(cfg.tracking)()))
    defaults = dataclasses.asdict(type(cfg)())
    # at their defaults, left out: a run named before they existed keeps its name
    for section, key in ADDED_LATER:
        if defining[section][key] == defaults[section][key]:
            del defining[section][key]
    return f"{cfg.strategy.name}-s{cfg.seed}-{config_hash(defining, length=8)}"


# Keys added after default run names were first given out (see run_name)
ADDED_LATER = (
    ("data", "robot_source"),
    ("data", "lerobot"),
    ("data", "metaworld"),
    ("eval", "env"),
    ("trainer", "compile"),
    ("trainer", "fused_optimizer"),
)


def dataset_spec(cfg: KinsulConfig) -> DataSpec:
    """What the robot dataset on disk actually holds (not what the config says it should)."""
    features = store.load(cfg, "robot")["train"].features
    action_shape = features["actions"].shape
    return DataSpec(image_size=cfg.world.image_size, action_dim=action_shape[1],
                    state_dim=features["state"].length, horizon=action_shape[0])  # fmt: skip


def prepare(cfg: KinsulConfig, strategy: Strategy, progress: bool = True):
    """Data, tokenizers and the VLA for a run, starting from the pretrained VLM."""
    store.generate(cfg, "robot", progress=progress)
    if strategy.vlm_ratio > 0 and not cfg.data.vqa_path:
        store.generate(cfg, "vlm", progress=progress)
    tok, fast = make_tokenizer(cfg), make_fast_tokenizer(cfg)
    model_cfg = dataclasses.replace(cfg.model, pretrained_path=str(pretrained.resolve(cfg)))
    vla = build_vla(model_cfg, tok, data_spec(cfg), with_expert=strategy.needs_expert)
    check_data_spec(vla.spec, dataset_spec(cfg), f"the dataset '{store.dataset_dir(cfg, 'robot')}'")
    return vla, tok, fast

"""The VLM backbone: a transformers PaliGemma (SigLIP vision tower + Gemma decoder), built from a size preset
or loaded from a local ``save_pretrained`` folder. Never downloads anything."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import GemmaConfig, PaliGemmaConfig, PaliGemmaForConditionalGeneration, SiglipVisionConfig

from kinsul.models.config import ModelConfig


class BackboneError(ValueError):
    """A pretrained backbone folder that is missing or incompatible."""


def paligemma_config(
    cfg: ModelConfig, vocab_size: int, image_size: int, image_token_id: int
) -> PaliGemmaConfig:
    d = cfg.dims
    if image_size % d["patch"]:
        raise BackboneError(
            f"image size {image_size} is not a multiple of the patch size {d['patch']} "
            f"(model.size '{cfg.size}', model.patch_size {cfg.patch_size})"
        )
    vision = SiglipVisionConfig(
        hidden_size=d["v_hidden"],
        intermediate_size=d["v_mlp"],
        num_hidden_layers=d["v_layers"],
        num_attention_heads=d["v_heads"],
        image_size=image_size,
        patch_size=d["patch"],
        projection_dim=d["t_hidden"],
        vision_use_head=False,
    )
    text = GemmaConfig(
        vocab_size=vocab_size,
        hidden_size=d["t_hidden"],
        intermediate_size=d["t_mlp"],
        num_hidden_layers=d["t_layers"],
        num_attention_heads=d["t_heads"],
        num_key_value_heads=d["t_kv"],
        head_dim=d["head_dim"],
        max_position_embeddings=2048,
        pad_token_id=0,
    )
    return PaliGemmaConfig(
        vision_config=vision, text_config=text, image_token_index=image_token_id, projection_dim=d["t_hidden"],
    )  # fmt: skip


def build_backbone(cfg: ModelConfig, vocab_size: int, image_size: int, image_token_id: int):
    model = PaliGemmaForConditionalGeneration(paligemma_config(cfg, vocab_size, image_size, image_token_id))
    model.config.text_config._attn_implementation = "sdpa"
    return model


def load_backbone(path: str | Path, vocab_size: int, image_size: int) -> PaliGemmaForConditionalGeneration:
    """Load a local PaliGemma folder and check it fits this world and tokenizer."""
    path = Path(path)
    config_file = path / "config.json"
    if not path.is_dir():
        raise BackboneError(
            f"model.pretrained_path '{path}' does not exist: expected a folder written by "
            "PaliGemmaForConditionalGeneration.save_pretrained (config.json + *.safetensors)"
        )
    if not config_file.is_file():
        raise BackboneError(
            f"model.pretrained_path '{path}' has no config.json: expected a transformers "
            "save_pretrained folder"
        )
    try:
        meta = json.loads(config_file.read_text())
    except json.JSONDecodeError as e:
        raise BackboneError(f"'{config_file}' is not valid JSON: {e}") from e
    if meta.get("model_type") != "paligemma":
        raise BackboneError(
            f"'{path}' holds a '{meta.get('model_type')}' model, expected a 'paligemma' model"
        )
    try:
        model = PaliGemmaForConditionalGeneration.from_pretrained(
            path, local_files_only=True, dtype=torch.float32
        )
    except Exception as e:
        raise BackboneError(f"could not load a PaliGemma model from '{path}': {type(e).__name__}: {e}") from e
    got_vocab = model.config.text_config.vocab_size
    got_image = model.config.vision_config.image_size
    if got_vocab < vocab_size:
        raise BackboneError(
            f"'{path}' has a text vocabulary of {got_vocab} tokens, expected at least {vocab_size} "
            "(the world's words, location tokens and FAST action tokens)"
        )
    if got_image != image_size:
        raise BackboneError(
            f"'{path}' expects {got_image}x{got_image} images, but world.image_size is {image_size}"
        )
    return model

"""The VLM backbone of a VLA: built from a size preset or loaded from a local ``save_pretrained`` folder of any
family in ``kinsul.backbones.FAMILIES``, with the codec that feeds it. Never downloads anything."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from kinsul.backbones import FAMILIES, BackboneAdapter, BackboneError
from kinsul.backbones.codecs import ProcessorCodec, has_tokenizer, load_processor
from kinsul.models.config import ModelConfig
from kinsul.tokenizers.text import TextTokenizer

__all__ = ["BackboneError", "build_backbone", "folder_codec", "load_backbone", "read_config"]


def build_backbone(cfg: ModelConfig, vocab_size: int, image_size: int, image_token_id: int):
    """A randomly initialised backbone of ``cfg.family`` at the size preset ``cfg.size``."""
    family = FAMILIES[cfg.family]
    try:
        return family.build(cfg.dims, vocab_size, image_size, image_token_id)
    except BackboneError as e:
        raise BackboneError(f"{e} (model.size '{cfg.size}', model.patch_size {cfg.patch_size})") from None


def read_config(path: str | Path) -> tuple[Path, dict, type[BackboneAdapter]]:
    """The folder's config.json and its family, checked before any weight is read."""
    path = Path(path)
    if not path.is_dir():
        raise BackboneError(f"model.pretrained_path '{path}' does not exist: expected a folder written by a "
                            "transformers model's save_pretrained (config.json + *.safetensors)")  # fmt: skip
    config_file = path / "config.json"
    if not config_file.is_file():
        raise BackboneError(f"model.pretrained_path '{path}' has no config.json: expected a transformers "
                            "save_pretrained folder")  # fmt: skip
    try:
        meta = json.loads(config_file.read_text())
    except json.JSONDecodeError as e:
        raise BackboneError(f"'{config_file}' is not valid JSON: {e}") from e
    kind = meta.get("model_type")
    if kind not in FAMILIES:
        raise BackboneError(f"'{path}' holds a '{kind}' model; kinsul has adapters for {sorted(FAMILIES)} "
                            "(kinsul/backbones/)")  # fmt: skip
    return path, meta, FAMILIES[kind]


def _text_vocab(meta: dict) -> int:
    return int(meta.get("text_config", {}).get("vocab_size") or meta.get("vocab_size") or 0)


def folder_codec(path: str | Path, cfg: ModelConfig, world: TextTokenizer):
    """The folder's own processor where it has a tokenizer; else kinsul's world tokenizer where the
    vocabulary fits it; else one line saying what to set."""
    path, meta, family = read_config(path)
    vocab = _text_vocab(meta)
    if has_tokenizer(path):
        processor = load_processor(path, family.family)
        if len(processor.tokenizer) > vocab and cfg.fast_tokens == "last":
            raise BackboneError(f"'{path}': the tokenizer has {len(processor.tokenizer)} tokens but the model's "
                                f"vocabulary only {vocab}")  # fmt: skip
        return ProcessorCodec(processor, family, vocab, cfg.fast_vocab_size, cfg.fast_tokens, f"'{path}'")
    if family.causal_prefix:
        raise BackboneError(f"'{path}' is a {family.family} model without a tokenizer: its prompts hold image "
                            "placeholders only its processor lays out; save the processor (tokenizer + image "
                            "processor) in the folder")  # fmt: skip
    if vocab < world.vocab_size:
        n_words = world.action_offset
        hint = (f"set model.fast_vocab_size <= {vocab - n_words}" if vocab - n_words >= 16 else
                "save the checkpoint's tokenizer and processor in the folder")  # fmt: skip
        raise BackboneError(f"'{path}' has no tokenizer and a text vocabulary of {vocab} tokens; kinsul's world "
                            f"tokenizer needs {world.vocab_size} ({n_words} words and specials + "
                            f"model.fast_vocab_size {world.n_action_tokens}): {hint}")  # fmt: skip
    return world


def load_backbone(path: str | Path, codec, image_size: int):
    """Load a local folder of any known family, checked against ``codec``; returns (model, adapter)."""
    path, meta, family = read_config(path)
    try:
        from transformers import AutoModelForImageTextToText

        model = AutoModelForImageTextToText.from_pretrained(path, local_files_only=True, dtype=torch.float32)
    except Exception as e:
        raise BackboneError(f"could not load a {family.family} model from '{path}': {type(e).__name__}: "
                            f"{str(e)[:300]}") from e  # fmt: skip
    model.config.text_config._attn_implementation = "sdpa"
    adapter = family(model)
    if codec.vocab_size > adapter.vocab_size:
        if isinstance(codec, ProcessorCodec):  # FAST tokens as added rows (model.fast_tokens=added)
            adapter.resize_vocab(codec.vocab_size)
        else:
            raise BackboneError(f"'{path}' has a text vocabulary of {adapter.vocab_size} tokens, expected at "
                                f"least {codec.vocab_size} (the world's words, location tokens and FAST action "
                                "tokens)")  # fmt: skip
    if not isinstance(codec, ProcessorCodec) and adapter.image_size != image_size:
        raise BackboneError(f"'{path}' expects {adapter.image_size}x{adapter.image_size} images, but "
                            f"world.image_size is {image_size}")  # fmt: skip
    return model, adapter

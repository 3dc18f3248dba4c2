"""Idefics3, the architecture of SmolVLM: a SigLIP-style vision tower, a pixel-shuffle connector and a Llama
decoder, causal throughout.

Layout (as ``Idefics3Processor`` builds it for one tile, no splitting): the image block
``<fake_token_around_image><global-img><image>*N<fake_token_around_image>`` sits inside the chat-style prompt;
image tokens replace the ``<image>`` placeholders where they stand.
"""

from __future__ import annotations

import torch
from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3VisionConfig, LlamaConfig

from kinsul.backbones.base import BackboneAdapter, BackboneError


class Idefics3Adapter(BackboneAdapter):
    family = "idefics3"
    model_type = "idefics3"
    causal_prefix = True

    @property
    def lm(self):
        return self.model.model.text_model

    def vision_modules(self):
        return self.model.model.vision_model, self.model.model.connector

    @property
    def n_image_tokens(self) -> int:
        return self.model.model.image_seq_len

    def image_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        # the vision model directly: get_image_features drops images whose normalised pixels are all zero
        hidden = self.model.model.vision_model(pixel_values=pixels).last_hidden_state
        return self.model.model.connector(hidden)

    def embed_prefix(self, pixels, text_ids, text_mask):
        image = self.image_tokens(pixels)
        text = self.lm.embed_tokens(text_ids).to(image.dtype)
        slots = text_ids == self.image_token_id
        per_row = slots.sum(1)
        if not bool((per_row == image.shape[1]).all()):
            raise BackboneError(f"each prompt must hold {image.shape[1]} image placeholders (one image, one tile); "
                                f"got {per_row.tolist()}")  # fmt: skip
        return text.masked_scatter(slots[..., None], image), text_mask

    # -- the processor's text layout (SmolVLM's chat format, one tile) ------------------------------------
    @staticmethod
    def prompt_text(processor, prompt: str) -> str:
        """``User:`` + the expanded image block + prompt + ``<end_of_utterance>\\nAssistant:``; the tokenizer's
        own special tokens (a <bos>, if it adds one) come with the encoding."""
        block = (f"{processor.fake_image_token}{processor.global_image_tag}"
                 f"{processor.image_token * processor.image_seq_len}{processor.fake_image_token}")  # fmt: skip
        return f"User:{block}{prompt}{processor.end_of_utterance_token}\nAssistant:"

    @staticmethod
    def answer_text(processor, answer: str) -> str:
        return f" {answer}"

    @staticmethod
    def eos_token(processor) -> str:
        return processor.end_of_utterance_token

    @staticmethod
    def build(dims: dict[str, int], vocab_size: int, image_size: int, image_token_id: int, scale_factor: int = 2,
              **_):  # fmt: skip
        if image_size % (dims["patch"] * scale_factor):
            raise BackboneError(f"image size {image_size} is not a multiple of patch {dims['patch']} x scale "
                                f"factor {scale_factor}")  # fmt: skip
        vision = Idefics3VisionConfig(
            hidden_size=dims["v_hidden"], intermediate_size=dims["v_mlp"], num_hidden_layers=dims["v_layers"],
            num_attention_heads=dims["v_heads"], image_size=image_size, patch_size=dims["patch"],
        )  # fmt: skip
        text = LlamaConfig(
            vocab_size=vocab_size, hidden_size=dims["t_hidden"], intermediate_size=dims["t_mlp"],
            num_hidden_layers=dims["t_layers"], num_attention_heads=dims["t_heads"],
            num_key_value_heads=dims["t_kv"], head_dim=dims["head_dim"], max_position_embeddings=2048,
            pad_token_id=0, tie_word_embeddings=True,
        )  # fmt: skip
        config = Idefics3Config(vision_config=vision, text_config=text, image_token_id=image_token_id,
                                scale_factor=scale_factor, tie_word_embeddings=True)  # fmt: skip
        model = Idefics3ForConditionalGeneration(config)
        model.config.text_config._attn_implementation = "sdpa"
        return model

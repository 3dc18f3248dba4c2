"""PaliGemma: a SigLIP vision tower, a linear projector and a Gemma decoder with a prefix-LM mask.

Layout (as ``PaliGemmaProcessor`` builds it): [image tokens | <bos> prompt \\n] is the bidirectional prefix;
the answer (or FAST tokens) and <eos> follow causally, the first predicted from the prefix's last token.
"""

from __future__ import annotations

import torch
from transformers import GemmaConfig, PaliGemmaConfig, PaliGemmaForConditionalGeneration, SiglipVisionConfig

from kinsul.backbones.base import BackboneAdapter, BackboneError


class PaliGemmaAdapter(BackboneAdapter):
    family = "paligemma"
    model_type = "paligemma"
    causal_prefix = False

    @property
    def lm(self):
        return self.model.model.language_model

    @property
    def image_token_id(self) -> int:
        return self.model.config.image_token_index

    def vision_modules(self):
        return self.model.model.vision_tower, self.model.model.multi_modal_projector

    def image_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.model.get_image_features(pixel_values=pixels).pooler_output

    def embed_prefix(self, pixels, text_ids, text_mask):
        # the prompt ids hold no image placeholders: the image tokens go in front, as the processor puts them
        image = self.image_tokens(pixels)
        text = self.lm.embed_tokens(text_ids).to(image.dtype)
        valid = torch.cat([torch.ones(image.shape[:2], dtype=torch.bool, device=image.device), text_mask], 1)
        return torch.cat([image, text], dim=1), valid

    # -- the processor's text layout --------------------------------------------------------------------
    @staticmethod
    def prompt_text(processor, prompt: str) -> str:
        """The text after the image tokens: ``<bos>`` + prompt + ``\\n``."""
        return f"{processor.tokenizer.bos_token}{prompt}\n"

    @staticmethod
    def answer_text(processor, answer: str) -> str:
        return answer

    @staticmethod
    def eos_token(processor) -> str:
        return processor.tokenizer.eos_token

    @staticmethod
    def build(dims: dict[str, int], vocab_size: int, image_size: int, image_token_id: int, **_):
        if image_size % dims["patch"]:
            raise BackboneError(
                f"image size {image_size} is not a multiple of the patch size {dims['patch']}"
            )
        vision = SiglipVisionConfig(
            hidden_size=dims["v_hidden"], intermediate_size=dims["v_mlp"], num_hidden_layers=dims["v_layers"],
            num_attention_heads=dims["v_heads"], image_size=image_size, patch_size=dims["patch"],
            projection_dim=dims["t_hidden"], vision_use_head=False,
        )  # fmt: skip
        text = GemmaConfig(
            vocab_size=vocab_size, hidden_size=dims["t_hidden"], intermediate_size=dims["t_mlp"],
            num_hidden_layers=dims["t_layers"], num_attention_heads=dims["t_heads"],
            num_key_value_heads=dims["t_kv"], head_dim=dims["head_dim"], max_position_embeddings=2048, pad_token_id=0,
        )  # fmt: skip
        config = PaliGemmaConfig(vision_config=vision, text_config=text, image_token_index=image_token_id,
                                 projection_dim=dims["t_hidden"])  # fmt: skip
        model = PaliGemmaForConditionalGeneration(config)
        model.config.text_config._attn_implementation = "sdpa"
        return model

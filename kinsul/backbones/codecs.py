"""Text codecs: how prompts, answers and FAST action tokens become token ids for one backbone.

A ``ProcessorCodec`` uses a checkpoint's own tokenizer and image processor (``AutoProcessor`` from the folder,
local files only) with its family's prompt layout; kinsul's word-level ``TextTokenizer`` is the codec of a
folder without a tokenizer (the shipped tiny VLM). Both answer the same questions, so data, losses, decoding and
the probe never ask which one they hold:

- ``prompt_ids(text, max_len)``: the prefix text ids (image placeholders included where the family puts them);
- ``answer_ids(answer)`` / ``fast_suffix(fast_ids, max_len)``: the causal suffix, ending in ``eos_id``;
- ``n_context``: leading suffix tokens that are context, not targets (the world codec's ``<sep>``: 1; a
  processor layout predicts the first answer token from the prefix's last token: 0);
- ``action_offset`` .. ``action_offset + n_action_tokens``: the ids FAST tokens map onto.
"""

from __future__ import annotations

from pathlib import Path

from kinsul.backbones.base import BackboneAdapter, BackboneError
from kinsul.tokenizers.text import Encoded, pad_batch

FAST_PLACEMENTS = ("last", "added")


class ProcessorCodec:
    n_context = 0

    def __init__(self, processor, adapter: type[BackboneAdapter], model_vocab: int, n_action_tokens: int,
                 placement: str = "last", source: str = "the folder"):  # fmt: skip
        self.processor, self.adapter = processor, adapter
        tk = processor.tokenizer
        self.tk = tk
        self.n_action_tokens = n_action_tokens
        self.eos_id = tk.convert_tokens_to_ids(adapter.eos_token(processor))
        self.bos_id = tk.bos_token_id
        self.pad_id = tk.pad_token_id
        self.sep_id = None
        self.image_id = tk.convert_tokens_to_ids(processor.image_token)
        if self.pad_id is None or self.pad_id in (self.eos_id, self.image_id):
            raise BackboneError(f"{source}: the tokenizer's pad token ({tk.pad_token!r}) must exist and differ from "
                                "its end and image tokens: kinsul masks padding by id")  # fmt: skip
        if placement == "last":
            # pi0-FAST: the last ids of the model's vocabulary (PaliGemma's rarely used <seg> / <loc> tokens)
            self.vocab_size = model_vocab
            self.action_offset = model_vocab - n_action_tokens
            used = {i for i in (self.eos_id, self.bos_id, self.pad_id, self.image_id) if i is not None}
            clash = sorted(i for i in used if i >= self.action_offset)
            if self.action_offset <= 0 or clash:
                raise BackboneError(f"{source}: FAST tokens on the last {n_action_tokens} ids of a {model_vocab}-token "
                                    f"vocabulary would overwrite the special ids {clash}: set model.fast_tokens=added "
                                    "(new rows) or a smaller model.fast_vocab_size")  # fmt: skip
        else:
            self.vocab_size = model_vocab + n_action_tokens
            self.action_offset = model_vocab
        ip = processor.image_processor
        self.image_mean = tuple(float(x) for x in ip.image_mean)
        self.image_std = tuple(float(x) for x in ip.image_std)

    # -- the codec interface --------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        return self.tk(text, add_special_tokens=False)["input_ids"]

    def decode(self, ids: list[int]) -> str:
        ids = ids[: ids.index(self.eos_id)] if self.eos_id in ids else ids
        words = [f"<act{i - self.action_offset}>" if i >= self.action_offset else None for i in ids]
        if any(words):
            return " ".join(
                w or self.tk.decode([i], skip_special_tokens=True) for w, i in zip(words, ids, strict=True)
            )
        return self.tk.decode(ids, skip_special_tokens=True).strip()

    def prompt_ids(self, text: str, max_len: int) -> list[int]:
        """The family's prompt around ``text`` truncated to ``max_len`` tokens (the layout's own tokens come on top)."""
        ids = self.encode(text)
        body = text if len(ids) <= max_len else self.tk.decode(ids[:max_len])
        return self.tk(self.adapter.prompt_text(self.processor, body), add_special_tokens=True)["input_ids"]

    def answer_ids(self, answer: str) -> list[int]:
        return [*self.encode(self.adapter.answer_text(self.processor, answer)), self.eos_id]

    def fast_suffix(self, fast_ids: list[int], max_len: int) -> list[int]:
        return [*self.action_ids(fast_ids)[:max_len], self.eos_id]

    def action_ids(self, fast_ids: list[int]) -> list[int]:
        return [self.action_offset + i for i in fast_ids]

    def batch(self, sequences: list[list[int]], max_len: int | None = None) -> Encoded:
        return pad_batch(sequences, self.pad_id, max_len)


def has_tokenizer(path: Path) -> bool:
    return any((path / f).is_file() for f in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json"))


def load_processor(path: Path, family: str):
    """The folder's own processor (tokenizer + image processor), offline."""
    from transformers import AutoProcessor

    try:
        processor = AutoProcessor.from_pretrained(path, local_files_only=True)
    except Exception as e:
        raise BackboneError(f"'{path}' has a tokenizer but AutoProcessor cannot load it ({type(e).__name__}: "
                            f"{str(e)[:200]}): save the {family} processor with save_pretrained beside the "
                            "model") from e  # fmt: skip
    if not hasattr(processor, "image_processor") or not hasattr(processor, "image_token"):
        raise BackboneError(f"'{path}' holds a {type(processor).__name__}, expected the {family} processor (an "
                            "image processor and a tokenizer with an image token)")  # fmt: skip
    return processor

"""A word-level tokenizer over KinsulWorld's closed vocabulary, with reserved slots for FAST action tokens.

Layout of the id space: special tokens, words, localisation tokens, then ``n_action_tokens`` FAST ids at
the end. The backbone's embedding table has exactly ``vocab_size`` rows, so action tokens are ordinary
tokens to the language model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from kinsul.world.language import WORDS, loc_words

PAD, BOS, EOS, SEP, UNK, IMAGE = "<pad>", "<bos>", "<eos>", "<sep>", "<unk>", "<image>"
SPECIALS = (PAD, BOS, EOS, SEP, UNK, IMAGE)


@dataclass
class Encoded:
    ids: torch.Tensor  # (B, L) int64, right-padded with pad_id
    mask: torch.Tensor  # (B, L) bool, True on real tokens


def pad_batch(sequences: list[list[int]], pad_id: int, max_len: int | None = None) -> Encoded:
    """Right-pad id lists with ``pad_id`` into tensors (truncating to ``max_len`` when given): every codec's batch."""
    length = max(1, max(len(s) for s in sequences)) if max_len is None else max_len
    ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    for b, s in enumerate(sequences):
        s = s[:length]
        ids[b, : len(s)] = torch.tensor(s, dtype=torch.long)
    return Encoded(ids, ids != pad_id)


class TextTokenizer:
    """The world codec (see ``kinsul.backbones.codecs``): ``<bos>`` + words as the prompt, ``<sep>`` + answer +
    ``<eos>`` as the suffix, ``<sep>`` being context, not a target."""

    n_context = 1
    image_mean = image_std = None  # the model config's pixel normalisation applies

    def __init__(self, words: list[str], n_action_tokens: int):
        self.words = list(words)
        self.n_action_tokens = n_action_tokens
        self.vocab = {w: i for i, w in enumerate([*SPECIALS, *self.words])}
        self.inverse = {i: w for w, i in self.vocab.items()}
        self.action_offset = len(self.vocab)
        self.vocab_size = self.action_offset + n_action_tokens

    @classmethod
    def for_world(cls, loc_bins: int, n_action_tokens: int) -> TextTokenizer:
        return cls([*WORDS, *loc_words(loc_bins)], n_action_tokens)

    @property
    def pad_id(self) -> int:
        return self.vocab[PAD]

    @property
    def bos_id(self) -> int:
        return self.vocab[BOS]

    @property
    def eos_id(self) -> int:
        return self.vocab[EOS]

    @property
    def sep_id(self) -> int:
        return self.vocab[SEP]

    @property
    def image_id(self) -> int:
        return self.vocab[IMAGE]

    def encode(self, text: str) -> list[int]:
        unk = self.vocab[UNK]
        return [self.vocab.get(w, unk) for w in text.split()]

    def decode(self, ids: list[int]) -> str:
        words = []
        for i in ids:
            if i == self.eos_id:
                break
            if i >= self.action_offset:
                words.append(f"<act{i - self.action_offset}>")
            elif self.inverse[i] not in SPECIALS:
                words.append(self.inverse[i])
        return " ".join(words)

    def batch(self, sequences: list[list[int]], max_len: int | None = None) -> Encoded:
        """Right-pad id lists into tensors (truncating to ``max_len`` when given)."""
        return pad_batch(sequences, self.pad_id, max_len)

    def prompt_ids(self, text: str, max_len: int) -> list[int]:
        return [self.bos_id, *self.encode(text)][:max_len]

    def answer_ids(self, answer: str) -> list[int]:
        return [self.sep_id, *self.encode(answer), self.eos_id]

    def fast_suffix(self, fast_ids: list[int], max_len: int) -> list[int]:
        return [self.sep_id, *self.action_ids(fast_ids)[:max_len], self.eos_id]

    def action_ids(self, fast_ids: list[int]) -> list[int]:
        return [self.action_offset + i for i in fast_ids]

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"words": self.words, "n_action_tokens": self.n_action_tokens}))

    @classmethod
    def load(cls, path: str | Path) -> TextTokenizer:
        data = json.loads(Path(path).read_text())
        return cls(data["words"], data["n_action_tokens"])

"""FAST action tokenizer (Pertsch et al., 2025): per-dimension DCT-II (orthonormal) over time, scale and
round, flatten low frequencies first (dimensions interleaved), then byte-pair encoding fitted on chunks.

Decoding inverts each step. A token sequence that decodes to the wrong number of coefficients is padded
with zeros or truncated, so decoding never crashes; ``decode`` reports whether that happened.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from scipy.fft import dct, idct
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

CHAR_BASE = 0x4E00  # integers become code points in a block of ordinary letters, so BPE merges them freely


class FastTokenizer:
    def __init__(self, horizon: int, action_dim: int, scale: float = 10.0, vocab_size: int = 256):
        self.horizon, self.action_dim = horizon, action_dim
        self.scale, self.vocab_size = scale, vocab_size
        self.min_coeff, self.max_coeff = 0, 0
        self.bpe: Tokenizer | None = None

    # -- the invertible numeric part -----------------------------------------------------------------
    def coefficients(self, chunk: np.ndarray) -> np.ndarray:
        """(H, A) chunk -> flat int coefficients, low frequencies first, dimensions interleaved."""
        c = dct(np.asarray(chunk, np.float64), type=2, norm="ortho", axis=0)
        return np.rint(c * self.scale).astype(np.int64).reshape(-1)  # row-major over (freq, dim)

    def from_coefficients(self, flat: np.ndarray) -> np.ndarray:
        c = flat.reshape(self.horizon, self.action_dim).astype(np.float64) / self.scale
        return idct(c, type=2, norm="ortho", axis=0).astype(np.float32)

    def _to_text(self, flat: np.ndarray) -> str:
        return "".join(chr(CHAR_BASE + int(v) - self.min_coeff) for v in flat)

    # -- BPE -----------------------------------------------------------------------------------------
    def fit(self, chunks: Iterable[np.ndarray]) -> FastTokenizer:
        chunks_list = [np.asarray(c) for c in chunks]
        coeffs = [self.coefficients(c) for c in chunks_list]
        if not coeffs:
            raise ValueError("FastTokenizer.fit needs at least one action chunk")
        # Orthonormal DCT: |coefficient| <= sqrt(H) * max|a|, so this alphabet covers every chunk whose
        # values stay within the largest magnitude seen in fitting (at least 1: actions live in [-1, 1]).
        peak = max(1.0, max(float(np.abs(c).max()) for c in chunks_list))
        self.min_coeff = -int(np.ceil(self.scale * np.sqrt(self.horizon) * peak))
        self.max_coeff = -self.min_coeff
        alphabet = [chr(CHAR_BASE + v) for v in range(self.max_coeff - self.min_coeff + 1)]
        if len(alphabet) > self.vocab_size:
            raise ValueError(
                f"FAST vocab_size={self.vocab_size} is smaller than the coefficient alphabet ({len(alphabet)}); "
                "raise the vocabulary or lower the scale"
            )
        bpe = Tokenizer(models.BPE())
        bpe.pre_tokenizer = pre_tokenizers.Split(pattern="\n", behavior="removed")  # one word per chunk
        trainer = trainers.BpeTrainer(
            vocab_size=self.vocab_size, initial_alphabet=alphabet, show_progress=False
        )
        bpe.train_from_iterator((self._to_text(c) for c in coeffs), trainer=trainer)
        self.bpe = bpe
        return self

    def encode(self, chunk: np.ndarray) -> list[int]:
        if self.bpe is None:
            raise RuntimeError("FastTokenizer is not fitted: call fit() or load()")
        flat = np.clip(self.coefficients(chunk), self.min_coeff, self.max_coeff)
        return self.bpe.encode(self._to_text(flat)).ids

    def decode(self, ids: list[int]) -> tuple[np.ndarray, bool]:
        """Token ids -> (H, A) chunk and whether the ids were valid (decoded to exactly H*A coefficients)."""
        if self.bpe is None:
            raise RuntimeError("FastTokenizer is not fitted: call fit() or load()")
        ids = [i for i in ids if 0 <= i < self.bpe.get_vocab_size()]
        text = "".join(self.bpe.id_to_token(i) for i in ids)
        flat = np.array([ord(ch) - CHAR_BASE + self.min_coeff for ch in text], dtype=np.int64)
        n = self.horizon * self.action_dim
        valid = len(flat) == n and len(ids) > 0
        flat = np.concatenate([flat, np.zeros(max(0, n - len(flat)), np.int64)])[:n]
        return self.from_coefficients(flat), valid

    # -- persistence ---------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        meta = {
            k: getattr(self, k)
            for k in ("horizon", "action_dim", "scale", "vocab_size", "min_coeff", "max_coeff")
        }
        (path / "fast.json").write_text(json.dumps(meta))
        self.bpe.save(str(path / "bpe.json"))

    @classmethod
    def load(cls, path: str | Path) -> FastTokenizer:
        path = Path(path)
        try:
            meta = json.loads((path / "fast.json").read_text())
            bpe = Tokenizer.from_file(str(path / "bpe.json"))
        except Exception as e:  # missing files, bad JSON, or a file tokenizers cannot parse
            raise ValueError(
                f"'{path}' is not a saved FAST tokenizer (expected fast.json and bpe.json): {e}"
            ) from e
        tok = cls(meta["horizon"], meta["action_dim"], meta["scale"], meta["vocab_size"])
        tok.min_coeff, tok.max_coeff, tok.bpe = meta["min_coeff"], meta["max_coeff"], bpe
        return tok

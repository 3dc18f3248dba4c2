"""Generated datasets as in-memory tensors: the embedded datasets fit in RAM, and indexing a uint8 tensor
is far cheaper per step than decoding PNGs in a worker."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from datasets import Dataset, Features, List, Value
from torch.utils.data import IterableDataset

from kinsul.data.batch import Observation, RobotBatch, VLMBatch
from kinsul.tokenizers.text import TextTokenizer


def _mapped(ds: Dataset, columns: list[str], fn, desc: str, features: Features | None = None) -> Dataset:
    """``fn`` over ``columns`` as a batched `datasets` map. For a split loaded from disk, `datasets` caches the
    result beside its arrow file, keyed by the split's fingerprint and ``fn`` (with what it closes over): a later
    run, or the next trial of a sweep, reads it back instead of decoding or tokenizing every row again."""
    try:
        return ds.select_columns(columns).map(fn, batched=True, batch_size=1000, remove_columns=columns,
                                              features=features, desc=desc)  # fmt: skip
    except (OSError, pa.ArrowException) as e:  # a truncated or corrupt cache file (a killed run, a full disk)
        from kinsul.data.store import DatasetError

        folder = Path(ds.cache_files[0]["filename"]).parent if ds.cache_files else "the dataset folder"
        raise DatasetError(f"a cached file in '{folder}' cannot be read ({str(e)[:120]}): delete the cache-*.arrow "
                           "files there (they are rebuilt on the next run), or the dataset folder itself "
                           "(`kinsul data generate` writes it again)") from e  # fmt: skip


def _decode_batch(batch: dict) -> dict:
    return {"pixels": [np.asarray(im.convert("RGB")).reshape(-1) for im in batch["image"]]}


def decode_images(ds: Dataset) -> torch.Tensor:
    """(N, H, W, 3) uint8 from the dataset's PNG column, through a cached map into a flat fixed-length uint8
    column (no per-row offsets), read from arrow directly: the numpy formatter would widen it to int64."""
    if len(ds) == 0:
        return torch.zeros(0, 0, 0, 3, dtype=torch.uint8)
    h, w = np.asarray(ds[0]["image"]).shape[:2]
    pixels = _mapped(ds, ["image"], _decode_batch, "decode images",
                     Features({"pixels": List(Value("uint8"), length=h * w * 3)}))  # fmt: skip
    flat = pixels.data.column("pixels").combine_chunks().flatten()
    # a copy: the arrow buffer is a read-only view of the memory-mapped cache file
    return torch.from_numpy(np.array(flat.to_numpy(zero_copy_only=False)).reshape(len(ds), h, w, 3))


def trim_padding(ids: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Drop the padding columns every row of a batch shares, so short batches run short sequences."""
    return ids[:, : int((ids != pad_id).sum(1).max())]


def index_batches(n: int, batch_size: int):
    """Consecutive index tensors covering range(n), in order."""
    for start in range(0, n, batch_size):
        yield torch.arange(start, min(start + batch_size, n))


def grouped_batch(
    idx: torch.Tensor, keys: torch.Tensor, groups: int, slot: int, g: torch.Generator
) -> torch.Tensor:
    """Batch ``slot`` of ``groups`` dealt from one draw ``idx`` of ``groups`` batches' samples: sorted by
    ``keys[idx]`` (stable, so random order among equal keys) and dealt out in an order shuffled with ``g``
    (transformers' group_by_length): each batch pads to near its own length."""
    idx = idx[torch.argsort(keys[idx], stable=True)].view(groups, -1)
    return idx[torch.randperm(groups, generator=g)[slot]]


def even_subset(ds: Dataset, n: int) -> Dataset:
    """At most ``n`` rows at an even stride, so every episode of a split contributes frames."""
    stride = max(1, len(ds) // n)
    return ds.select(range(0, len(ds), stride)[:n])


def answer_tokens(tok: TextTokenizer, answer: str) -> list[int]:
    """A VLM answer as the suffix the backbone learns (world codec: <sep> + answer + <eos>)."""
    return tok.answer_ids(answer)


def prompt_ids(tok: TextTokenizer, texts: list[str], max_len: int):
    return tok.batch([tok.prompt_ids(t, max_len) for t in texts], max_len=None).ids


@dataclass
class VLMTensors:
    images: torch.Tensor  # (N, H, W, 3) uint8
    text_ids: torch.Tensor  # (N, L) <bos> + question
    answer_ids: torch.Tensor  # (N, S) <sep> + answer + <eos>
    qtype: list[str]
    answers: list[str]

    @classmethod
    def from_dataset(cls, ds: Dataset, tok: TextTokenizer, max_text_len: int) -> VLMTensors:
        def tokenize(batch: dict) -> dict:
            return {"text_ids": [tok.prompt_ids(q, max_text_len) for q in batch["question"]],
                    "answer_ids": [tok.answer_ids(a) for a in batch["answer"]]}  # fmt: skip

        enc = _mapped(ds, ["question", "answer"], tokenize, "tokenize")[:]
        text, suffix = tok.batch(enc["text_ids"]).ids, tok.batch(enc["answer_ids"]).ids
        return cls(decode_images(ds), text, suffix, list(ds["qtype"]), list(ds["answer"]))

    def __len__(self) -> int:
        return len(self.qtype)

    def batch(self, idx: torch.Tensor, pad_id: int) -> VLMBatch:
        text = trim_padding(self.text_ids[idx], pad_id)
        suffix = trim_padding(self.answer_ids[idx], pad_id)
        state = torch.zeros(len(idx), 0)
        return VLMBatch(Observation(self.images[idx], state, text, text != pad_id), suffix, suffix != pad_id)


@dataclass
class RobotTensors:
    images: torch.Tensor  # (N, H, W, 3) uint8
    state: torch.Tensor  # (N, S) float32
    text_ids: torch.Tensor  # (N, L) <bos> + instruction
    actions: torch.Tensor  # (N, H, A)
    action_pad: torch.Tensor  # (N, H) bool
    fast_ids: torch.Tensor  # (N, F)
    heldout: torch.Tensor  # (N,) bool

    @classmethod
    def from_dataset(cls, ds: Dataset, tok: TextTokenizer, fast, max_text_len: int, max_fast_len: int):
        def tokenize(batch: dict) -> dict:
            chunks = np.asarray(batch["actions"], dtype=np.float32)
            return {"text_ids": [tok.prompt_ids(t, max_text_len) for t in batch["instruction"]],
                    "fast_ids": [tok.fast_suffix(fast.encode(a), max_fast_len) for a in chunks]}  # fmt: skip

        cols = ds.with_format("numpy", columns=["state", "actions", "action_pad", "heldout"])[:]
        enc = _mapped(ds, ["instruction", "actions"], tokenize, "tokenize")[:]
        return cls(
            images=decode_images(ds),
            state=torch.from_numpy(cols["state"].astype(np.float32)),
            text_ids=tok.batch(enc["text_ids"]).ids,
            actions=torch.from_numpy(cols["actions"].astype(np.float32)),
            action_pad=torch.from_numpy(cols["action_pad"].astype(bool)),
            fast_ids=tok.batch(enc["fast_ids"]).ids,
            heldout=torch.from_numpy(cols["heldout"].astype(bool)),
        )

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, idx: torch.Tensor, pad_id: int) -> RobotBatch:
        text = trim_padding(self.text_ids[idx], pad_id)
        fast = trim_padding(self.fast_ids[idx], pad_id)
        obs = Observation(self.images[idx], self.state[idx], text, text != pad_id)
        return RobotBatch(obs, self.actions[idx], self.action_pad[idx], fast, fast != pad_id)


class FixedBatches(IterableDataset):
    """``data`` in order, ``batch_size`` frames per batch: validation and offline evaluation."""

    def __init__(self, data: RobotTensors, batch_size: int, pad_id: int):
        self.data, self.batch_size, self.pad_id = data, batch_size, pad_id

    def __iter__(self):
        for idx in index_batches(len(self.data), self.batch_size):
            yield self.data.batch(idx, self.pad_id)

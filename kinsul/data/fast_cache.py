"""The FAST tokenizer is fitted once per robot dataset (on its training chunks) and cached beside it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kinsul.data import store
from kinsul.data.atomic import atomic_folder
from kinsul.data.config import DataSections
from kinsul.fields import config_hash
from kinsul.tokenizers.fast import FastTokenizer
from kinsul.world.env import ACTION_DIM

FIT_CHUNKS = 20_000  # chunks used to fit the BPE (a strided subset of a larger training split)


def fast_tokenizer(cfg: DataSections, scale: float, vocab_size: int) -> FastTokenizer:
    """The FAST tokenizer of ``cfg``'s robot data at this quantisation scale and BPE vocabulary size."""
    root = store.dataset_dir(cfg, "robot")
    path = Path(root) / f"fast-{config_hash(scale, vocab_size, FIT_CHUNKS)}"
    if (path / "fast.json").is_file():
        try:
            return FastTokenizer.load(path)
        except ValueError as e:  # a damaged cache: never re-fitted over silently, never a traceback
            raise store.DatasetError(f"the cached FAST tokenizer '{path}' cannot be read ({str(e).split(': ', 1)[-1][:200]}): "
                                     "delete that folder and the next run fits it again from the robot data") from None  # fmt: skip
    train = store.load(cfg, "robot")["train"]
    stride = max(1, len(train) // FIT_CHUNKS)
    subset = train.select(range(0, len(train), stride))
    chunks = subset.with_format("numpy", columns=["actions"])[:]["actions"].astype(np.float32)
    tok = FastTokenizer(cfg.data.chunk_size, ACTION_DIM, scale, vocab_size).fit(chunks)
    # a parallel sweep worker may fit the same tokenizer first: its copy is kept, and both load the same one
    with atomic_folder(path, overwrite=False) as tmp:
        tok.save(tmp)
    return FastTokenizer.load(path)

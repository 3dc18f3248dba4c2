"""The FAST tokenizer is fitted once per robot dataset (on its training chunks) and cached beside it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from kinsul.config.loader import config_hash
from kinsul.config.schema import KinsulConfig
from kinsul.data import store
from kinsul.tokenizers.fast import FastTokenizer
from kinsul.world.env import ACTION_DIM

FIT_CHUNKS = 20_000  # chunks used to fit the BPE (a strided subset of a larger training split)


def fast_tokenizer(cfg: KinsulConfig) -> FastTokenizer:
    root = store.dataset_dir(cfg, "robot")
    m = cfg.model
    path = Path(root) / f"fast-{config_hash(m.fast_scale, m.fast_vocab_size, FIT_CHUNKS)}"
    if (path / "fast.json").is_file():
        return FastTokenizer.load(path)
    train = store.load(cfg, "robot")["train"]
    stride = max(1, len(train) // FIT_CHUNKS)
    subset = train.select(range(0, len(train), stride))
    chunks = subset.with_format("numpy", columns=["actions"])[:]["actions"].astype(np.float32)
    tok = FastTokenizer(cfg.data.chunk_size, ACTION_DIM, m.fast_scale, m.fast_vocab_size).fit(chunks)
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tok.save(tmp)
    try:
        os.replace(tmp, path)
    except OSError:
        # another process (a parallel sweep worker) fitted the same tokenizer first: keep its copy
        shutil.rmtree(tmp, ignore_errors=True)
        if not (path / "fast.json").is_file():
            raise
        return FastTokenizer.load(path)
    return tok

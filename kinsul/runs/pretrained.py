"""Where the pretrained VLM for a config lives: an explicit path, the local cache, or the shipped default."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from kinsul.config.schema import KinsulConfig
from kinsul.data.store import KINDS
from kinsul.fields import config_hash
from kinsul.models.config import SIZE_PRESETS
from kinsul.world.foreign import default_location_bins

SHIPPED_DIR = Path(__file__).resolve().parents[1] / "assets" / "vlm"  # kinsul/assets/vlm/<size>-<hash>/
META_FILE = "kinsul_vlm.json"
TOKENIZER_FILE = "kinsul_tokenizer.json"


class PretrainedVLMNotFound(FileNotFoundError):
    pass


def vlm_hash(cfg: KinsulConfig) -> str:
    """Everything the pretrained weights depend on: model size and vocabulary, VLM data, pretraining recipe."""
    m = cfg.model
    # the patch side only where it differs from the preset's: the VLMs named before the field existed keep their
    # names, and naming the preset's own patch size changes nothing
    patch = m.dims["patch"]
    size = [m.size] if patch == SIZE_PRESETS[m.size]["patch"] else [m.size, patch]
    recipe = dataclasses.asdict(cfg.pretrain) | {
        "threads": None,
        "eval_every": None,
        "checkpoint_every": None,
    }
    # the domain's default bins, named or not, leave the name as it was before the field existed
    if recipe["location_bins"] in (None, default_location_bins(cfg.data.vlm_domain, cfg.data.loc_bins)):
        del recipe["location_bins"]
    return config_hash(
        "vlm", *size, m.fast_vocab_size, m.max_text_len, KINDS["vlm"].dataset_hash(cfg), recipe
    )


def vlm_name(cfg: KinsulConfig) -> str:
    return f"{cfg.model.size}-{vlm_hash(cfg)}"


def cache_dir(cfg: KinsulConfig) -> Path:
    return Path(cfg.data.root) / "vlm-models" / vlm_name(cfg)


class CorruptVLMError(ValueError):
    """A kinsul VLM whose weights do not match the sha256 recorded when it was written."""


def weights_digest(folder: Path) -> dict[str, str]:
    """sha256 of each weights file of a save_pretrained folder."""
    out = {}
    for path in sorted(Path(folder).glob("*.safetensors")):
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        out[path.name] = h.hexdigest()
    return out


def verify(folder: Path) -> Path:
    """A kinsul VLM folder's weights against the sha256 in its metadata (older caches without one pass)."""
    expected = read_meta(folder).get("sha256")
    if expected and weights_digest(folder) != expected:
        raise CorruptVLMError(f"the weights in '{folder}' do not match the sha256 recorded when they were written "
                              "(a damaged or altered file): delete the folder and run `kinsul pretrain-vlm` with "
                              "the same configuration, or restore it from the repository")  # fmt: skip
    return folder


def resolve(cfg: KinsulConfig) -> Path:
    """The backbone folder for ``cfg``: model.pretrained_path, else the cache, else the shipped copy (checked
    against its recorded sha256)."""
    if cfg.model.pretrained_path:
        return Path(cfg.model.pretrained_path)
    for candidate in (cache_dir(cfg) / "model", SHIPPED_DIR / vlm_name(cfg)):
        if (candidate / META_FILE).is_file():
            return verify(candidate)
    shipped = sorted(p.name for p in SHIPPED_DIR.glob("*") if p.is_dir())
    raise PretrainedVLMNotFound(
        f"no pretrained VLM '{vlm_name(cfg)}' in '{cache_dir(cfg)}' or the shipped copies ({shipped or 'none'}): "
        "run `kinsul pretrain-vlm` with the same configuration, or set model.pretrained_path"
    )


def read_meta(path: Path) -> dict:
    meta = Path(path) / META_FILE
    try:
        return json.loads(meta.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CorruptVLMError(f"'{meta}' is not readable JSON ({e}): a damaged file; delete the folder '{path}' and "
                              "run `kinsul pretrain-vlm` with the same configuration, or restore it") from None  # fmt: skip

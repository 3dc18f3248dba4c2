"""VLM question answering for co-training and the retention probe: the generated KinsulWorld questions, or the
user's own VQA data from a local folder (``data.vqa_path``), mapped to one schema: image, question, answer,
qtype."""

from __future__ import annotations

from pathlib import Path

from datasets import Dataset, DatasetDict, Value, load_dataset, load_from_disk
from datasets import Image as ImageFeature
from PIL import Image

from kinsul.data import store
from kinsul.data.store import DatasetError


def _open(path: Path) -> DatasetDict:
    if not path.is_dir():
        raise DatasetError(f"data.vqa_path '{path}' does not exist: expected a `datasets` folder (save_to_disk) "
                           "or a folder of parquet files")  # fmt: skip
    try:
        if (path / "dataset_dict.json").is_file() or (path / "dataset_info.json").is_file():
            ds = load_from_disk(str(path))
            return ds if isinstance(ds, DatasetDict) else DatasetDict({"train": ds})
        files = sorted(path.rglob("*.parquet"))
        if not files:
            raise DatasetError(
                f"data.vqa_path '{path}' holds neither a saved `datasets` folder nor parquet files"
            )
        # one split per parquet file stem's leading word ("train-00000.parquet" -> train)
        splits: dict[str, list[str]] = {}
        for f in files:
            splits.setdefault(f.stem.split("-")[0], []).append(str(f))
        return load_dataset("parquet", data_files=splits)
    except DatasetError:
        raise
    except Exception as e:
        raise DatasetError(f"data.vqa_path '{path}' cannot be read as a dataset ({type(e).__name__}: "
                           f"{str(e)[:200]})") from e  # fmt: skip


def _square(size: int):
    def resize(batch: dict) -> dict:
        out = []
        for im in batch["image"]:
            im = im.convert("RGB")
            out.append(im if im.size == (size, size) else im.resize((size, size), Image.Resampling.BICUBIC))
        return {"image": out}

    return resize


def user_vqa(cfg) -> dict[str, Dataset]:
    """{"train", "probe"} from ``data.vqa_path``, columns renamed and images at ``world.image_size``."""
    d = cfg.data
    path = Path(d.vqa_path)
    raw = _open(path)
    out = {}
    for role, split in (("train", d.vqa_train_split), ("probe", d.vqa_probe_split)):
        if split not in raw:
            raise DatasetError(f"data.vqa_path '{path}' has no split '{split}' (data.vqa_{role}_split); it has "
                               f"{sorted(raw)}")  # fmt: skip
        ds = raw[split]
        columns = {d.vqa_image: "image", d.vqa_question: "question", d.vqa_answer: "answer"}
        if d.vqa_type:
            columns[d.vqa_type] = "qtype"
        missing = [c for c in columns if c not in ds.column_names]
        if missing:
            fields = [f"data.vqa_{'type' if columns[c] == 'qtype' else columns[c]}" for c in missing]
            raise DatasetError(f"data.vqa_path '{path}' split '{split}' has no column {missing} "
                               f"({', '.join(fields)}); it has {ds.column_names}")  # fmt: skip
        ds = ds.select_columns(list(columns)).rename_columns(columns)
        if not isinstance(ds.features["image"], ImageFeature):
            raise DatasetError(f"data.vqa_path '{path}' column '{d.vqa_image}' holds {ds.features['image']}, "
                               "expected images (a datasets Image feature)")  # fmt: skip
        if "qtype" not in ds.column_names:
            ds = ds.add_column("qtype", ["vqa"] * len(ds))
        ds = ds.cast_column("question", Value("string")).cast_column("answer", Value("string"))
        ds = ds.map(_square(cfg.world.image_size), batched=True, batch_size=256, desc="resize images",
                    features=ds.features)  # fmt: skip
        out[role] = ds
    return out


def vqa_splits(cfg, progress: bool = False) -> dict[str, Dataset]:
    """The VQA data a run co-trains on ("train") and probes retention with ("probe")."""
    if cfg.data.vqa_path:
        return user_vqa(cfg)
    store.generate(cfg, "vlm", progress=progress)
    ds = store.load(cfg, "vlm")
    return {"train": ds["train"], "probe": ds["probe"]}

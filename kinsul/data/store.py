"""Datasets on disk: cached by a hash of their config, written atomically, loaded with clear errors."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from datasets import Dataset, DatasetDict, Features, load_from_disk
from datasets.utils.logging import disable_progress_bar
from tqdm.auto import tqdm

from kinsul.data import lerobot, metaworld, robot, vlm
from kinsul.data.atomic import atomic_folder
from kinsul.data.config import DataSections
from kinsul.fields import config_hash

# Bump a kind's version when its generated content changes, so caches are rebuilt.
GENERATOR_VERSION = {"robot": 2, "vlm": 1, "lerobot": 1, "metaworld": 1}
META_FILE = "kinsul_meta.json"  # written last, inside the temporary folder, before the atomic rename
SHARD = 25  # episodes / samples per work item
MAX_SHARD_BYTES = 500 * 2**20


class DatasetError(RuntimeError):
    """A dataset folder that is missing, incomplete or not what kinsul expects."""


@dataclasses.dataclass(frozen=True)
class Kind:
    name: str
    splits: tuple[str, ...]
    features: Callable[[DataSections], Features]
    generate: Callable[[DataSections, str, range], dict[str, list]]
    sizes: Callable[[DataSections], dict[str, int]]
    key: Callable[[DataSections], tuple]  # the config parts the content depends on
    # robot sources: (state_dim, action_dim) of the frames, known before they are made; and what the dataset's
    # meta file records beside them (a source's normalisation, to undo on the policy's actions)
    dims: Callable[[DataSections], tuple[int, int]] | None = None
    meta: Callable[[DataSections], dict] | None = None

    def dataset_hash(self, cfg: DataSections) -> str:
        return config_hash(self.name, GENERATOR_VERSION[self.name], *self.key(cfg))


def _robot_key(cfg: DataSections) -> tuple:
    d = cfg.data
    return cfg.world, cfg.concepts, d.seed, d.chunk_size, dataclasses.asdict(d.robot_episodes)


def _vlm_key(cfg: DataSections) -> tuple:
    d = cfg.data
    return (
        cfg.world.image_size,
        cfg.concepts,
        d.seed,
        dataclasses.asdict(d.vlm_samples),
        d.vlm_min_objects,
        d.vlm_max_objects,
        d.loc_bins,
        # the domain only where it is not the default: the world datasets and VLMs keep their names
        *(() if d.vlm_domain == "world" else (d.vlm_domain,)),
    )


KINDS = {
    "robot": Kind(
        "robot",
        tuple(robot.ROBOT_SPLITS),
        lambda c: robot.robot_features(c.data.chunk_size),
        robot.generate_episodes,
        lambda c: dataclasses.asdict(c.data.robot_episodes),
        _robot_key,
        dims=lambda c: (robot.STATE_DIM, robot.ACTION_DIM),
    ),
    "vlm": Kind(
        "vlm",
        vlm.VLM_SPLITS,
        lambda c: vlm.vlm_features(),
        vlm.generate_samples,
        lambda c: dataclasses.asdict(c.data.vlm_samples),
        _vlm_key,
    ),
}

# Where the robot frames come from (data.robot_source): each source makes the same columns and splits, so
# training, evaluation and the FAST tokenizer read them alike.
ROBOT_SOURCES = {
    "kinsul": KINDS["robot"],
    "lerobot": Kind(
        "lerobot",
        tuple(robot.ROBOT_SPLITS),
        lambda c: robot.robot_features(c.data.chunk_size, *lerobot.dims(c)),
        lerobot.generate_episodes,
        lerobot.sizes,
        lerobot.key,
        dims=lerobot.dims,
        meta=lerobot.meta,
    ),
    "metaworld": Kind(
        "metaworld",
        tuple(robot.ROBOT_SPLITS),
        lambda c: robot.robot_features(c.data.chunk_size, *metaworld.dims(c)),
        metaworld.generate_episodes,
        metaworld.sizes,
        metaworld.key,
        dims=metaworld.dims,
        meta=metaworld.meta,
    ),
}


def kind_of(cfg: DataSections, kind: str) -> Kind:
    return ROBOT_SOURCES[cfg.data.robot_source] if kind == "robot" else KINDS[kind]


def dataset_dir(cfg: DataSections, kind: str) -> Path:
    k = kind_of(cfg, kind)
    return Path(cfg.data.root) / f"{k.name}-{k.dataset_hash(cfg)}"


def _work(args: tuple) -> tuple[str, int, dict[str, list]]:
    kind, cfg, split, start, stop = args
    return split, start, kind_of(cfg, kind).generate(cfg, split, range(start, stop))


def generate(cfg: DataSections, kind: str, force: bool = False, progress: bool = True) -> Path:
    """Generate (or reuse) the ``kind`` dataset for ``cfg``; returns its folder."""
    k = kind_of(cfg, kind)
    final = dataset_dir(cfg, kind)
    if final.exists() and not force:
        open_dataset(final, kind)  # a cached folder must still be sound
        return final
    digest = k.dataset_hash(cfg)
    start = time.perf_counter()
    sizes = k.sizes(cfg)
    jobs = [
        (kind, cfg, s, a, min(a + SHARD, n)) for s in k.splits for n in [sizes[s]] for a in range(0, n, SHARD)
    ]
    parts: dict[str, list[tuple[int, dict[str, list]]]] = {s: [] for s in k.splits}
    bar = tqdm(
        total=sum(sizes.values()),
        desc=f"{kind} data",
        unit="ep" if kind == "robot" else "qa",
        disable=not progress,
    )
    with bar, ProcessPoolExecutor(cfg.data.num_workers, mp_context=get_context("fork")) as pool:
        # the bar is closed (its line ended) also on an error, which is then printed on a line of its own
        for split, first, cols in pool.map(_work, jobs):
            parts[split].append((first, cols))
            bar.update(next(j[4] - j[3] for j in jobs if j[2] == split and j[3] == first))
    features = k.features(cfg)
    splits = {}
    for split in k.splits:
        columns = {
            name: [v for _, cols in sorted(parts[split], key=lambda p: p[0]) for v in cols[name]]
            for name in features
        }
        splits[split] = Dataset.from_dict(columns, features=features)
    disable_progress_bar()  # one bar per generation is enough
    # explicit shard counts: datasets cannot reload an empty split saved with its default of zero shards
    shards = {s: 1 + d.data.nbytes // MAX_SHARD_BYTES for s, d in splits.items()}
    meta = {
        "kind": kind,
        "source": k.name,
        "hash": digest,
        "generator_version": GENERATOR_VERSION[k.name],
        "rows": {s: len(d) for s, d in splits.items()},
        "sizes": sizes,
        "config": {
            "world": dataclasses.asdict(cfg.world),
            "concepts": dataclasses.asdict(cfg.concepts),
            "data": dataclasses.asdict(cfg.data),
        },
        **(k.meta(cfg) if k.meta else {}),
    }
    with atomic_folder(final, overwrite=True) as tmp:  # forced regeneration swaps in the new folder
        DatasetDict(splits).save_to_disk(str(tmp), num_shards=shards)
        meta["seconds"] = round(time.perf_counter() - start, 2)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
    return final


def open_dataset(path: str | Path, kind: str | None = None) -> DatasetDict:
    """Load a generated dataset folder, or fail naming the folder and what it should contain."""
    path = Path(path)
    meta = _read_meta(path, kind)
    try:
        ds = load_from_disk(str(path))
    except Exception as e:
        raise DatasetError(
            f"dataset folder '{path}' could not be loaded as a Hugging Face DatasetDict "
            f"({type(e).__name__}: {e}): the folder is corrupt; delete it and regenerate"
        ) from e
    expected = set(KINDS[meta["kind"]].splits)
    if not isinstance(ds, DatasetDict) or set(ds) != expected:
        got = sorted(ds) if isinstance(ds, DatasetDict) else type(ds).__name__
        raise DatasetError(f"dataset folder '{path}' has splits {got}, expected {sorted(expected)}")
    return ds


def _read_meta(path: Path, kind: str | None) -> dict:
    """A dataset folder's meta file, checked: the folder exists, the file is whole and names ``kind``."""
    if not path.is_dir():
        raise DatasetError(
            f"dataset folder '{path}' does not exist: expected a folder written by "
            "`kinsul data generate` (run it first)"
        )
    meta_path = path / META_FILE
    if not meta_path.is_file():
        raise DatasetError(
            f"dataset folder '{path}' has no {META_FILE}: it is incomplete (an interrupted "
            "generation?) or not a kinsul dataset; delete it and run `kinsul data generate`"
        )
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as e:
        raise DatasetError(f"'{meta_path}' is not valid JSON ({e}): the dataset folder is corrupt") from e
    if kind is not None and meta.get("kind") != kind:
        raise DatasetError(f"dataset folder '{path}' holds '{meta.get('kind')}' data, expected '{kind}' data")
    return meta


def robot_normalization(cfg: DataSections) -> dict | None:
    """The state and action scaling the robot frames were made with (a LeRobot source's), or None: what a
    simulator's rollouts undo on the policy's actions. Read from the generated dataset's meta file."""
    return _read_meta(dataset_dir(cfg, "robot"), "robot").get("lerobot", {}).get("normalization")


def load(cfg: DataSections, kind: str) -> DatasetDict:
    """The dataset for ``cfg`` (it must have been generated), with its columns checked against the schema."""
    ds = open_dataset(dataset_dir(cfg, kind), kind)
    features = kind_of(cfg, kind).features(cfg)
    for split, d in ds.items():
        if d.features != features:
            raise DatasetError(
                f"dataset '{dataset_dir(cfg, kind)}' split '{split}' has columns "
                f"{d.features}, expected {features}"
            )
    return ds

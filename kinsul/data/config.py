"""The data section of the configuration, and the sections generated data depends on (`DataSections`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from kinsul.envs.config import MetaWorldConfig
from kinsul.fields import FieldValueError, check_choice, check_range
from kinsul.world.concepts import ConceptConfig
from kinsul.world.config import WorldConfig


@dataclass(frozen=True)
class SplitSizes:
    """Rows of each split: episodes of robot data, samples of VLM data."""

    train: int = 0
    validation: int = 0
    probe: int = 0

    def __post_init__(self) -> None:
        for name in ("train", "validation", "probe"):
            check_range(name, getattr(self, name), 0, 10_000_000)


NORMALIZATIONS = ("mean_std", "min_max", "identity")


@dataclass(frozen=True)
class LeRobotConfig:
    """A LeRobot dataset (format v3.0) in a local folder, mapped onto kinsul's robot frames
    (docs/bring-your-own-data.md). Its episodes are split in order: the last ``validation_episodes`` are held out
    for validation, the ``probe_episodes`` before them for the held-out offline error, the rest is trained on."""

    root: str | None = None  # the dataset folder (holding meta/info.json); relative to the preset's folder
    # Camera features (video or image) that make the observation image, side by side, then resized square
    cameras: list[str] = field(default_factory=lambda: ["observation.image"])
    state: str = "observation.state"  # a float vector feature
    action: str = "action"  # a float vector feature
    # Scaling by meta/stats.json: (x - mean) / std, min/max to [-1, 1], or none; of the state, and of the actions
    # (min/max by default: the action range FAST's quantisation scale, model.fast_scale, is set for)
    normalize: str = "mean_std"
    normalize_action: str = "min_max"
    validation_episodes: int = 1  # the last episodes: validation (val/action_mse, the best checkpoint)
    probe_episodes: int = 0  # the episodes before those: val/action_mse_heldout (NaN when 0)
    # A decoded video frame belongs to a row when their timestamps differ by at most this (lerobot's default)
    tolerance_s: float = 1e-4

    def __post_init__(self) -> None:
        if self.root == "":
            raise FieldValueError("root", self.root, "a folder path or null")
        if not self.cameras or not all(isinstance(c, str) and c for c in self.cameras):
            raise FieldValueError("cameras", self.cameras, "a non-empty list of camera feature names")
        for name in ("state", "action"):
            if not getattr(self, name):
                raise FieldValueError(name, getattr(self, name), "a feature name")
        check_choice("normalize", self.normalize, NORMALIZATIONS)
        check_choice("normalize_action", self.normalize_action, NORMALIZATIONS)
        check_range("validation_episodes", self.validation_episodes, 0, 1_000_000)
        check_range("probe_episodes", self.probe_episodes, 0, 1_000_000)
        check_range("tolerance_s", self.tolerance_s, 0, 10)


@dataclass(frozen=True)
class DataConfig:
    """Generated datasets: robot demonstrations and VLM question answering, cached under ``root``."""

    root: str = "data"  # folder for generated datasets and caches (relative to the working folder)
    seed: int = 0  # generation seed; every episode and sample derives its own seed from it
    chunk_size: int = 10  # action chunk horizon H of the stored action targets
    # Episodes per split; 'probe' demonstrations target held-out concepts and are never trained on.
    robot_episodes: SplitSizes = field(default_factory=lambda: SplitSizes(1000, 50, 100))
    # Question/answer samples per split; 'probe' is the knowledge-retention probe.
    vlm_samples: SplitSizes = field(default_factory=lambda: SplitSizes(50_000, 500, 1400))
    vlm_min_objects: int = 1  # objects per VLM scene, lower bound
    vlm_max_objects: int = 4  # objects per VLM scene, upper bound
    loc_bins: int = 16  # localisation answers: table coordinates discretised into this many bins per axis
    # The visual domain of the VLM data (pretraining, co-training, the retention probe): "world" (KinsulWorld's
    # own table scenes) or "foreign" (the same concepts on textured backgrounds, other scales and positions, no
    # gripper, no table-location questions: a VLM that does not know the robot's world; docs/results.md)
    vlm_domain: str = "world"
    num_workers: int = 2  # generation processes
    # VQA data of the user's own, replacing the generated VLM questions for co-training and the retention probe:
    # a `datasets` folder (save_to_disk) or a folder of parquet files, with an image, a question and an answer
    # column; the probe split is held out from co-training.
    vqa_path: str | None = None
    vqa_image: str = "image"  # column names in that folder
    vqa_question: str = "question"
    vqa_answer: str = "answer"
    vqa_type: str = ""  # a question-type column for per-type probe accuracy ("": one type, 'vqa')
    vqa_train_split: str = "train"  # co-training samples
    vqa_probe_split: str = "test"  # the retention probe
    # Where the robot demonstrations come from: "kinsul" (generated in KinsulWorld by its scripted expert),
    # "lerobot" (a LeRobot v3.0 dataset folder, the `lerobot` section) or "metaworld" (Meta-World's scripted
    # policies, recorded as a LeRobot dataset: the `metaworld` section)
    robot_source: str = "kinsul"
    lerobot: LeRobotConfig = field(default_factory=LeRobotConfig)
    metaworld: MetaWorldConfig = field(default_factory=MetaWorldConfig)

    def __post_init__(self) -> None:
        check_range("chunk_size", self.chunk_size, 1, 256)
        check_range("vlm_min_objects", self.vlm_min_objects, 1, 6)
        check_range("vlm_max_objects", self.vlm_max_objects, self.vlm_min_objects, 6)
        check_range("loc_bins", self.loc_bins, 2, 100)
        check_range("num_workers", self.num_workers, 1, 256)
        check_choice("vlm_domain", self.vlm_domain, ("world", "foreign"))
        check_choice("robot_source", self.robot_source, ("kinsul", "lerobot", "metaworld"))
        if self.robot_source == "lerobot" and not self.lerobot.root:
            raise FieldValueError("lerobot.root", self.lerobot.root, "the LeRobot dataset folder, with "
                                  "data.robot_source=lerobot")  # fmt: skip
        if self.vqa_path == "":
            raise FieldValueError("vqa_path", self.vqa_path, "a folder path or null")
        for name in ("vqa_image", "vqa_question", "vqa_answer", "vqa_train_split", "vqa_probe_split"):
            if not getattr(self, name):
                raise FieldValueError(name, getattr(self, name), "a column or split name")


class DataSections(Protocol):
    """What generated data depends on: the world, its concepts and the data section. The root configuration
    has these (and more); the data package reads only them and never imports the root."""

    @property
    def world(self) -> WorldConfig: ...

    @property
    def concepts(self) -> ConceptConfig: ...

    @property
    def data(self) -> DataConfig: ...

"""The data section of the configuration, and the sections generated data depends on (`DataSections`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from kinsul.fields import FieldValueError, check_choice, check_range
from kinsul.world.concepts import ConceptConfig
from kinsul.world.config import WorldConfig


@dataclass(frozen=True)
class SplitSizes:
    train: int = 0
    validation: int = 0
    probe: int = 0

    def __post_init__(self) -> None:
        for name in ("train", "validation", "probe"):
            check_range(name, getattr(self, name), 0, 10_000_000)


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

    def __post_init__(self) -> None:
        check_range("chunk_size", self.chunk_size, 1, 256)
        check_range("vlm_min_objects", self.vlm_min_objects, 1, 6)
        check_range("vlm_max_objects", self.vlm_max_objects, self.vlm_min_objects, 6)
        check_range("loc_bins", self.loc_bins, 2, 100)
        check_range("num_workers", self.num_workers, 1, 256)
        check_choice("vlm_domain", self.vlm_domain, ("world", "foreign"))
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

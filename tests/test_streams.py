"""The resumable batch streams share one base and one seed function, and still draw exactly what they drew
before they were folded together: the shipped VLM's pretraining data and every recorded run depend on it."""

import hashlib
import itertools

from test_datamodule import PAD, robot_tensors

from kinsul.config import load_config
from kinsul.data.streams import StepStream, step_seed
from kinsul.pretraining.pretrain import CurriculumBatches
from kinsul.pretraining.question_stream import QuestionStream
from kinsul.pretraining.vision_stage import SceneStream
from kinsul.runs.assembly import make_tokenizer
from kinsul.training.datamodule import MixedBatches


def digest(value) -> str:
    return hashlib.sha256(repr(value).encode()).hexdigest()[:16]


def test_every_training_stream_is_a_step_stream():
    assert all(
        issubclass(s, StepStream) for s in (MixedBatches, CurriculumBatches, QuestionStream, SceneStream)
    )


def test_the_seed_function_keeps_the_formulas_the_streams_had():
    assert step_seed(3, 7) == 3 * 1_000_003 + 7
    assert step_seed(3, 7, 1) == (3 * 1_000_003 + 7) * 8191 + 1
    assert step_seed(3, 7, 1, 17) == ((3 * 1_000_003 + 7) * 8191 + 1) * 31 + 17


def test_the_streams_draw_what_they_drew_before_the_fold():
    # fingerprints recorded with the streams of 5a7e10b (before StepStream), same inputs
    robot = robot_tensors()
    for groups, expected in ((1, "99dd7f34d4aedd8d"), (4, "79e2104dcbdf79bd")):
        stream = MixedBatches(robot, None, 16, 0.0, seed=3, pad_id=PAD, length_groups=groups)
        frames = [b.robot.actions[:, 0, 0].long().tolist() for b in itertools.islice(iter(stream), 9)]
        assert digest(frames) == expected, groups
    # micro's pretraining recipe as it was when the fingerprints were recorded
    cfg = load_config("micro", ["pretrain.batch_size=8", "pretrain.curriculum=[5,10,15]", "pretrain.steps=20",
                                "pretrain.warmup_steps=5"])  # fmt: skip
    scenes = SceneStream(cfg, 16, 4, seed=5)
    assert digest(
        [scenes.batch(k)["token"].tolist() + scenes.batch(k)["loc_x"].tolist() for k in (0, 3)]
    ) == ("b0cfdf3e1be2ecee")
    questions = QuestionStream(cfg, make_tokenizer(cfg))
    assert digest([questions.batch(k).suffix_ids.tolist() for k in (0, 5)]) == "a6952edcc1812d31"

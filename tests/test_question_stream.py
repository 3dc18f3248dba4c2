import pytest
import torch

from kinsul.config import load_config
from kinsul.pretraining.question_stream import QuestionStream, object_cap
from kinsul.runs.assembly import make_tokenizer


def _stream(*overrides):
    cfg = load_config(overrides=["pretrain.batch_size=16", "pretrain.length_groups=4", *overrides])
    return QuestionStream(cfg, make_tokenizer(cfg))


def test_batches_are_a_function_of_the_step_and_resume_mid_group():
    a, b = _stream(), _stream()
    b.start_step = 6  # mid-group: the group is redrawn from its first step
    x, r = a.batch(6), next(iter(b))
    assert torch.equal(x.obs.images, r.obs.images) and torch.equal(x.obs.text_ids, r.obs.text_ids)
    assert torch.equal(x.suffix_ids, r.suffix_ids)
    assert not torch.equal(x.obs.images, a.batch(7).obs.images)


def test_a_group_deals_every_question_once_and_long_answers_together():
    s = _stream("pretrain.qtype_weights.caption=1")
    data = s.questions(2000)
    slots = [s.batch_indices(data, 2000, k) for k in range(4)]
    assert sorted(torch.cat(slots).tolist()) == list(range(64))
    lengths = (data.answer_ids != s.tok.pad_id).sum(1)
    grouped = sum(int(lengths[i].max()) for i in slots)
    assert grouped < 0.8 * 4 * int(lengths.max())  # short batches no longer pad to the captions


def test_curriculum_caps_objects_and_weights_set_the_mix():
    s = _stream("pretrain.curriculum=[300,800,1500]")
    assert [object_cap(s.cfg, k) for k in (0, 299, 300, 1499, 1500)] == [1, 1, 2, 3, 4]
    early = s.questions(0)
    assert "relation" not in early.qtype  # one object cannot be related to another
    assert all(a in {"1", "0"} for q, a in zip(early.qtype, early.answers, strict=True) if q == "count")
    s = _stream("pretrain.qtype_weights.relation=3", "pretrain.qtype_weights.caption=0")
    drawn = [q for k in range(2000, 2040, 4) for q in s.questions(k).qtype]
    assert "caption" not in drawn
    assert drawn.count("relation") > 2 * drawn.count("colour")


def test_weights_no_scene_can_pose_are_a_clear_error():
    zero = [f"pretrain.qtype_weights.{q}=0" for q in ("caption", "colour", "shape", "count", "side", "loc")]
    s = _stream(*zero, "pretrain.qtype_weights.relation=1")
    with pytest.raises(ValueError, match="pretrain.qtype_weights.*at most 1 objects"):
        s.batch(0)

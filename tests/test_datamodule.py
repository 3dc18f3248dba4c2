"""The training stream: mixture at a fixed batch size, FAST-length groups, and resumability."""

import itertools

import pytest
import torch

from kinsul.config import ConfigError, load_config
from kinsul.data.tensors import RobotTensors
from kinsul.training.datamodule import MixedBatches

PAD = 0


def robot_tensors(n=200, max_fast=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, max_fast + 1, (n,), generator=g)
    fast = torch.zeros(n, max_fast, dtype=torch.long)
    for i, n_tok in enumerate(lengths.tolist()):
        fast[i, :n_tok] = torch.randint(1, 50, (n_tok,), generator=g)
    return RobotTensors(
        images=torch.zeros(n, 8, 8, 3, dtype=torch.uint8), state=torch.zeros(n, 4),
        text_ids=torch.ones(n, 5, dtype=torch.long), actions=torch.arange(n).float()[:, None, None].expand(n, 2, 3),
        action_pad=torch.zeros(n, 2, dtype=torch.bool), fast_ids=fast, heldout=torch.zeros(n, dtype=torch.bool),
    )  # fmt: skip


def frame_ids(batch):
    return batch.actions[:, 0, 0].long().tolist()


def test_length_groups_cut_fast_padding_and_keep_the_stream_resumable():
    robot = robot_tensors()
    plain = MixedBatches(robot, None, 16, 0.0, seed=3, pad_id=PAD)
    grouped = MixedBatches(robot, None, 16, 0.0, seed=3, pad_id=PAD, length_groups=4)
    width = {name: [b.robot.fast_ids.shape[1] for b in itertools.islice(iter(s), 40)]
             for name, s in (("plain", plain), ("grouped", grouped))}  # fmt: skip
    assert sum(width["grouped"]) < 0.85 * sum(width["plain"])
    # A group's four batches are the 64 frames it drew, each batch a contiguous run of FAST lengths.
    first = [b.robot for b in itertools.islice(iter(grouped), 4)]
    lengths = [sorted((b.fast_ids != PAD).sum(1).tolist()) for b in first]
    runs = sorted(lengths)
    assert all(a[-1] <= b[0] for a, b in itertools.pairwise(runs))
    # Batch k is a pure function of (seed, k): a stream resumed at step 6 continues exactly.
    resumed = MixedBatches(robot, None, 16, 0.0, seed=3, pad_id=PAD, length_groups=4)
    resumed.start_step = 6
    expected = [frame_ids(b.robot) for b in itertools.islice(iter(grouped), 6, 10)]
    assert [frame_ids(b.robot) for b in itertools.islice(iter(resumed), 4)] == expected


def test_length_groups_below_one_is_a_config_error():
    with pytest.raises(ConfigError, match="trainer.length_groups"):
        load_config(overrides=["trainer.length_groups=0"])

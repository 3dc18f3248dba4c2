"""The offline metrics and their calibration references: what each metric rewards, and an exact replay."""

import numpy as np
import pytest
import torch

from kinsul.bench.calibration import fresh_expert_chunks, replay_states, target_between
from kinsul.models.decoding import chunk_metrics


def test_velocity_mse_scores_the_expected_chunk_so_sampling_spread_does_not_count():
    g = torch.Generator().manual_seed(0)
    demo = torch.rand(64, 10, 3, generator=g) * 2 - 1
    pad = torch.zeros(64, 10, dtype=torch.bool)
    offsets = torch.tensor([-1.0, 1.0] * 4)[:, None, None, None]  # zero-mean spread around the demonstration
    narrow = demo[None] + 0.1 * offsets
    wide = demo[None] + 0.5 * offsets
    n, w = chunk_metrics(narrow, demo, pad), chunk_metrics(wide, demo, pad)
    assert torch.allclose(n["velocity_mse"], torch.zeros(64), atol=1e-10)
    assert torch.allclose(w["velocity_mse"], torch.zeros(64), atol=1e-10)
    assert torch.all(w["action_mse"] > n["action_mse"])  # one draw pays for the spread


def test_velocity_mse_ignores_the_grip_channel_and_padded_steps():
    demo = torch.zeros(2, 4, 3)
    pad = torch.tensor([[False, False, True, True]] * 2)
    pred = torch.zeros(1, 2, 4, 3)
    pred[..., 2] = 5.0  # grip: no grounding needed
    pred[:, :, 2:, :2] = 7.0  # past the episode's end
    out = chunk_metrics(pred, demo, pad)
    assert torch.all(out["velocity_mse"] == 0) and torch.all(out["action_mse"] > 0)
    pred[:, :, 0, 0] = 1.0
    assert chunk_metrics(pred, demo, pad)["velocity_mse"].tolist() == pytest.approx([0.25, 0.25])


def test_replay_reproduces_the_stored_episode_exactly(micro_data):
    cfg, robot, _ = micro_data
    val = robot["validation"]
    ep = val[0]["episode_index"]
    rows = [r for r in val if r["episode_index"] == ep]
    states = replay_states(cfg, "validation", ep)
    assert len(states) == len(rows)
    for (env, _), row in zip(states, rows, strict=True):
        assert np.array_equal(env.render(), np.asarray(row["image"].convert("RGB")))
    chunks = fresh_expert_chunks(states[0], cfg.data.chunk_size, k=3, seed=1)
    assert chunks.shape == (3, cfg.data.chunk_size, 3)
    assert not np.allclose(chunks[0], chunks[1])  # new styles and noise: different plans from one state


def test_the_target_lies_between_the_references():
    assert target_between(0.16, 0.02) == pytest.approx(0.09)
    assert 0.02 < target_between(0.16, 0.02, fraction=0.25) < 0.16

import numpy as np
import pytest

from kinsul.world import TASK_FAMILIES, KinsulWorldEnv
from kinsul.world.expert import ScriptedExpert, run_expert_episode


@pytest.mark.parametrize("family", TASK_FAMILIES)
@pytest.mark.parametrize("concepts", ["seen", "heldout"])
def test_expert_success_rate(family, concepts):
    env = KinsulWorldEnv()
    expert = ScriptedExpert(env, np.random.default_rng(0))
    wins = [
        run_expert_episode(env, expert, 10_000 + s, {"task": family, "concepts": concepts})[2]["is_success"]
        for s in range(150)
    ]
    assert np.mean(wins) >= 0.95


def test_expert_is_smooth_and_multimodal():
    env = KinsulWorldEnv()
    paths = []
    for k in range(8):  # the same scene and task, different expert styles
        _, actions, info = run_expert_episode(
            env, ScriptedExpert(env, np.random.default_rng(k)), 5, {"task": "reach"}
        )
        a = np.stack(actions)[:, :2]
        assert np.abs(np.diff(a, axis=0)).mean() < 0.35  # smooth: small step-to-step change
        paths.append(a[:8].sum(axis=0))
    spread = np.ptp(np.stack(paths), axis=0).max()
    assert spread > 0.5  # varied: the early motion differs across styles

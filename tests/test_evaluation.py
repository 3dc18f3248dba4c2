import pytest

from kinsul.evaluation.policies import ExpertPolicy, RandomPolicy, WrongObjectPolicy
from kinsul.evaluation.rollouts import evaluation_specs, rollout, summarize, wilson
from kinsul.world import TASK_FAMILIES, ConceptConfig, KinsulWorldEnv, WorldConfig

WORLD, CONCEPTS = WorldConfig(), ConceptConfig()


def make_env():
    return KinsulWorldEnv(WORLD, CONCEPTS)


def run(policy, episodes=20, seed=0):
    specs = evaluation_specs(list(TASK_FAMILIES), episodes, seed)
    return summarize({k: rollout(policy, v, make_env, execute_steps=5) for k, v in specs.items()})


def test_scripted_expert_through_the_harness_succeeds():
    m = run(ExpertPolicy(horizon=10))
    assert m["eval/success"]["value"] >= 0.95 and m["eval/success_heldout"]["value"] >= 0.95
    for family in TASK_FAMILIES:
        assert m[f"eval/success_{family}"]["value"] >= 0.9 and m[f"eval/success_{family}"]["n"] == 20
    assert m["eval/language_following"]["value"] >= 0.9


def test_random_policy_scores_near_zero():
    m = run(RandomPolicy(horizon=10), episodes=10)
    assert m["eval/success"]["value"] <= 0.15


def test_wrong_object_policy_never_follows_language():
    specs = evaluation_specs(["reach"], 20, 0)["language"]
    m = summarize({"language": rollout(WrongObjectPolicy(10), specs, make_env, execute_steps=5)})
    assert m["eval/language_following"]["value"] == 0.0


def test_metrics_are_deterministic_for_a_seed_set():
    assert run(ExpertPolicy(10), episodes=4, seed=3) == run(ExpertPolicy(10), episodes=4, seed=3)


def test_wilson_interval():
    lo, hi = wilson(0.5, 100)
    assert lo == pytest.approx(0.404, abs=1e-3) and hi == pytest.approx(0.596, abs=1e-3)
    assert wilson(1.0, 10)[1] == 1.0


def test_a_pool_of_environments_reused_across_rollouts_gives_what_fresh_ones_give():
    """Evaluation sets and success-curve points borrow one EnvPool: an environment that already ran episodes of
    another family and set must give every episode exactly what a fresh one gives."""
    from kinsul.evaluation.rollouts import EnvPool

    specs = evaluation_specs(list(TASK_FAMILIES), 3, 7)
    made = []

    def counted():
        made.append(1)
        return make_env()

    def outcome(results):
        return [(r.spec, r.success, r.followed, r.steps) for r in results]

    fresh = {
        k: outcome(rollout(ExpertPolicy(10), v, make_env, execute_steps=5, batch=4)) for k, v in specs.items()
    }
    with EnvPool(counted) as pool:
        twice = [{k: outcome(rollout(ExpertPolicy(10), v, pool, execute_steps=5, batch=4)) for k, v in specs.items()}
                 for _ in range(2)]  # fmt: skip
        assert len(made) == 4  # made once, for the first rollout; every later one borrowed them
    assert pool.envs == []
    assert twice[0] == fresh and twice[1] == fresh

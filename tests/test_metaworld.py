"""Meta-World as a third-party simulator: its tasks keep KinsulWorld's contract, the rollout harness scores its own
scripted policy with the environment's success flag, its demonstrations are a LeRobot v3.0 dataset that the
LeRobot source reads back, and a strategy trains on them and is evaluated in it.

Needs the optional extra (`pip install -e '.[metaworld]'`) and EGL (Debian's libegl1, libegl-mesa0); skipped,
saying why, without them."""

import json

import numpy as np
import pytest
from conftest import micro_train_config as micro

from kinsul.envs.metaworld import ENV_ID, MetaWorldEnv  # first: it picks MuJoCo's headless EGL backend

pytest.importorskip("metaworld", reason="Meta-World is an optional extra: pip install -e '.[metaworld]'")

from kinsul.data import lerobot as lr  # noqa: E402
from kinsul.data import metaworld as mw_data  # noqa: E402
from kinsul.data import store  # noqa: E402
from kinsul.evaluation.policies import SimulatorScriptedPolicy, StillPolicy  # noqa: E402
from kinsul.evaluation.rollouts import evaluation_specs, rollout, summarize  # noqa: E402

pytestmark = pytest.mark.integration
TASKS = "[reach-v3,drawer-close-v3]"


def test_a_task_keeps_kinsulworlds_contract_and_is_seeded():
    import gymnasium as gym

    env = gym.make(ENV_ID, task="reach-v3", image_size=32, max_steps=80, disable_env_checker=True).unwrapped
    obs, info = env.reset(seed=3)
    assert obs["image"].shape == (32, 32, 3) and obs["image"].dtype == np.uint8 and obs["image"].std() > 5
    assert obs["state"].shape == (4,) and obs["instruction"] == "reach the goal with the gripper"
    assert info["is_success"] is False
    again, _ = env.reset(seed=3)
    np.testing.assert_array_equal(again["image"], obs["image"])  # the seed decides the scene
    other, _ = env.reset(seed=4, options={"task": "drawer-close-v3"})
    assert other["instruction"] == "close the drawer" and env.task == "drawer-close-v3"
    env.close()


def test_the_harness_scores_meta_worlds_scripted_policy_with_the_environments_own_flag():
    def make(max_steps):
        return lambda: MetaWorldEnv("reach-v3", 32, "corner2", max_steps)

    specs = evaluation_specs(["reach-v3", "drawer-close-v3"], 2, 0, ("seen",))["seen"]
    scripted = summarize(
        {"seen": rollout(SimulatorScriptedPolicy(), specs, make(100), execute_steps=1, batch=2)}
    )
    still = summarize({"seen": rollout(StillPolicy(4), specs[:2], make(40), execute_steps=1, batch=2)})
    assert scripted["eval/success"]["value"] == 1.0 and scripted["eval/success"]["n"] == 4
    assert still["eval/success_reach-v3"]["value"] == 0.0  # a robot that never moves reaches nothing
    assert "eval/language_following" not in scripted  # Meta-World defines no distractor objects


def test_scripted_demonstrations_are_a_lerobot_dataset_read_back_exactly(tmp_path):
    from kinsul.config import load_config

    cfg = load_config("micro", [f"data.root={tmp_path}", "data.robot_source=metaworld", "eval.env=metaworld",
                                "trainer.curve_every=0", f"data.metaworld.tasks={TASKS}", "data.metaworld.episodes=2",
                                "data.metaworld.max_steps=100", "data.lerobot.normalize=identity",
                                "data.lerobot.normalize_action=identity"])  # fmt: skip
    store.generate(cfg, "robot", progress=False)
    folder = lr.LeRobotFolder(mw_data.recording_dir(cfg), mw_data.as_lerobot(cfg).data.lerobot)
    info = json.loads((folder.root / "meta" / "info.json").read_text())
    assert (
        info["codebase_version"] == "v3.0" and info["total_episodes"] == 4 and info["robot_type"] == "sawyer"
    )
    # interleaved: the last round, one episode of each task, is validation
    assert [folder.tasks[0], folder.tasks[1]] == ["reach the goal with the gripper", "close the drawer"]
    ds = store.load(cfg, "robot")
    assert sorted(set(ds["validation"]["task"])) == ["close the drawer", "reach the goal with the gripper"]
    # the first recorded frame is what the environment shows at that episode's reset
    env = MetaWorldEnv("reach-v3", cfg.world.image_size, "corner2", 100)
    seed = int(np.random.SeedSequence([cfg.data.seed, 0, 0, 0]).generate_state(1)[0])
    obs, _ = env.reset(seed=seed)
    first = ds["train"].with_format("numpy")[0]
    np.testing.assert_allclose(first["state"], obs["state"], rtol=1e-6)
    assert np.abs(np.asarray(ds["train"][0]["image"], int) - obs["image"]).mean() < 6  # AV1-compressed
    env.close()


def test_ki_trains_on_meta_world_demonstrations_and_is_evaluated_there(micro_root):
    from mlflow.tracking import MlflowClient

    from kinsul import tracking
    from kinsul.evaluation.evaluate import evaluate
    from kinsul.training.train import train

    cfg = micro(micro_root, "data.robot_source=metaworld", "eval.env=metaworld", "trainer.curve_episodes=1",
                f"data.metaworld.tasks={TASKS}", "data.metaworld.episodes=2", "data.metaworld.max_steps=100",
                "strategy.name=ki", "trainer.max_steps=2", "trainer.run_name=metaworld-ki")  # fmt: skip
    run = train(cfg, progress=False)
    # the success curve during training is measured in Meta-World too (steps 0 and 2: the micro preset's curve_every)
    history = MlflowClient(cfg.tracking.uri).get_metric_history(
        tracking.run_id_of(run), "eval/success_reach-v3"
    )
    assert sorted(m.step for m in history) == [0, 2]
    metrics, rates = evaluate(run, ["eval.episodes=1", "eval.videos=1"], log=False)
    assert set(rates) == {"eval/success", "eval/success_reach-v3", "eval/success_drawer-close-v3"}
    assert rates["eval/success"]["n"] == 2 and 0.0 <= metrics["eval/success"] <= 1.0
    assert np.isfinite(metrics["val/action_mse"]) and np.isfinite(metrics["eval/retention"])
    assert list((run / "eval").glob("rollout_0_*.gif"))

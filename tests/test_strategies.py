"""The physics of the method: which parameters receive gradient from which loss, under each strategy."""

import pytest
import torch

from kinsul.config import ConfigError, load_config
from kinsul.data.batch import Observation, RobotBatch, TrainBatch, VLMBatch
from kinsul.models.build import build_vla
from kinsul.runs.assembly import data_spec, make_tokenizer
from kinsul.strategies import StrategyError, available, create
from kinsul.strategies.base import validate
from kinsul.tokenizers.fast import FastTokenizer
from kinsul.training.module import VLAModule, check_groups, resolve_loss_weights

BUILTINS = ["naive", "frozen", "stop_grad", "fast_joint", "vlm_cotrain", "ki_no_vlm", "ki", "pi0_fast", "grad_scale",
            "delayed_unfreeze"]  # fmt: skip


@pytest.fixture(scope="module")
def setup():
    cfg = load_config("micro")
    tok = make_tokenizer(cfg)
    g = torch.Generator().manual_seed(0)
    chunks = torch.rand(50, cfg.data.chunk_size, 3, generator=g).numpy() * 2 - 1
    fast = FastTokenizer(cfg.data.chunk_size, 3, cfg.model.fast_scale, cfg.model.fast_vocab_size).fit(chunks)
    B = 4
    text = tok.batch([[tok.bos_id, *tok.encode("reach the red square")]] * B)
    obs = Observation(torch.randint(0, 256, (B, 64, 64, 3), dtype=torch.uint8, generator=g),
                      torch.rand(B, 4, generator=g), text.ids, text.mask)  # fmt: skip
    seqs = [[tok.sep_id, *tok.action_ids(fast.encode(c)), tok.eos_id] for c in chunks[:B]]
    f = tok.batch(seqs)
    robot = RobotBatch(obs, torch.from_numpy(chunks[:B]), torch.zeros(B, cfg.data.chunk_size, dtype=torch.bool),
                       f.ids, f.mask)  # fmt: skip
    q = tok.batch([[tok.bos_id, *tok.encode("what colour is the square")]] * B)
    a = tok.batch([[tok.sep_id, tok.vocab["red"], tok.eos_id]] * B)
    vlm = VLMBatch(Observation(obs.images, torch.zeros(B, 0), q.ids, q.mask), a.ids, a.mask)
    return cfg, tok, fast, robot, vlm


def module_for(name, setup, **options):
    cfg, tok, fast, _, _ = setup
    torch.manual_seed(0)
    strategy = create(name, options)
    vla = build_vla(cfg.model, tok, data_spec(cfg), with_expert=strategy.needs_expert)
    return VLAModule(vla, strategy, cfg, fast)


def grads_from(module, setup, terms):
    """Backward through the given loss terms only; returns (backbone got gradient, expert got gradient)."""
    *_, robot, vlm = setup
    module.zero_grad(set_to_none=True)
    module.weights = {t: w for t, w in module.weights.items() if t in terms}
    losses = module.compute_losses(TrainBatch(robot, vlm))
    sum(losses.values()).backward()

    def touched(m):
        return m is not None and any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())

    return touched(module.vla.backbone), touched(module.vla.expert)


def test_builtins_are_registered_through_entry_points():
    assert set(BUILTINS) <= set(available())
    from kinsul.strategies.registry import builtins

    assert sorted(builtins()) == sorted(BUILTINS)  # the plugin's strategy is not a built-in


@pytest.mark.parametrize(
    "name, backbone_gets_flow_gradient",
    [("naive", True), ("frozen", False), ("stop_grad", False), ("fast_joint", True), ("vlm_cotrain", True),
     ("ki_no_vlm", False), ("ki", False)],
)  # fmt: skip
def test_flow_loss_gradient_reaches_backbone_only_without_insulation(
    setup, name, backbone_gets_flow_gradient
):
    backbone, expert = grads_from(module_for(name, setup), setup, {"fm"})
    assert expert
    assert backbone == backbone_gets_flow_gradient


def test_ki_backbone_learns_only_from_fast_and_vlm(setup):
    module = module_for("ki", setup)
    assert grads_from(module, setup, {"fm"}) == (False, True)
    module = module_for("ki", setup)
    assert grads_from(module, setup, {"fast"}) == (True, False)
    module = module_for("ki", setup)
    assert grads_from(module, setup, {"vlm"}) == (True, False)


def test_gradient_scaling_between_stop_grad_and_naive(setup):
    """kv_alpha scales the flow gradient that reaches the backbone: 0 none, 1 all of it."""
    grads = {}
    for alpha in (1.0, 0.25):
        module = module_for("naive", setup, kv_alpha=alpha)
        grads_from(module, setup, {"fm"})
        grads[alpha] = module.vla.backbone.model.language_model.layers[0].self_attn.k_proj.weight.grad.clone()
    torch.testing.assert_close(grads[0.25], 0.25 * grads[1.0], atol=1e-7, rtol=1e-4)


def test_trainable_parameter_counts(setup):
    counts = {}
    for name in BUILTINS:
        m = module_for(name, setup)
        check_groups(m.vla, m.groups)
        counts[name] = sum(p.numel() for p in m.vla.parameters() if p.requires_grad)
    vla = module_for("naive", setup).vla
    n_backbone = sum(p.numel() for p in vla.backbone.parameters())
    n_expert = sum(p.numel() for p in vla.expert.parameters())
    assert counts["frozen"] == counts["stop_grad"] == n_expert
    for name in ("naive", "fast_joint", "vlm_cotrain", "ki_no_vlm", "ki", "grad_scale"):
        assert counts[name] == n_backbone + n_expert, name
    assert counts["pi0_fast"] == n_backbone


def test_frozen_backbone_stays_in_eval_mode(setup):
    m = module_for("frozen", setup)
    m.train()
    m.on_train_epoch_start()
    assert not m.vla.backbone.training and m.vla.expert.training


def test_bad_strategy_inputs_fail_clearly(setup):
    with pytest.raises(ConfigError, match="unknown strategy 'kii'; did you mean 'ki'"):
        create("kii")
    with pytest.raises(ConfigError, match="strategy 'naive' produces no 'vlm' loss"):
        resolve_loss_weights(create("naive"), {"vlm": 2.0})
    with pytest.raises(StrategyError, match="does not satisfy the Strategy protocol"):
        validate(object(), "plugin 'x'")
    with pytest.raises(ConfigError, match="options.alpha"):
        create("naive", {"alpha": 0.5})
    with pytest.raises(StrategyError, match="decoding 'fast' needs the 'fast' loss"):
        create("naive", {"decoding": "fast"})


def test_vlm_data_takes_its_share_of_a_fixed_batch():
    from kinsul.training.datamodule import split_batch

    assert split_batch(32, create("ki").vlm_ratio) == (24, 8)  # same 32 samples per step as naive
    assert split_batch(32, create("naive").vlm_ratio) == (32, 0)
    assert split_batch(4, 0.01) == (3, 1)  # never a step without one of the loss terms
    with pytest.raises(ConfigError, match="'trainer.batch_size': got 1, expected at least 2"):
        split_batch(1, 0.25)
    with pytest.raises(ConfigError, match="vlm_ratio"):
        create("ki", {"vlm_ratio": 1.0})


def test_strategy_options_are_checked_when_the_config_loads():
    """Before any work, and naming the real key: strategy.options.<name>."""
    with pytest.raises(ConfigError, match=r"'strategy.options.kv_alpha': got 5"):
        load_config(None, ["strategy.options.kv_alpha=5"])
    with pytest.raises(ConfigError, match=r"'strategy.options.bogus'"):
        load_config(None, ["strategy.options.kv_alpha=0.5", "strategy.options.bogus=1"])
    assert load_config(None, ["strategy.options.kv_alpha=0.5"]).strategy.options == {"kv_alpha": 0.5}


def test_a_plugin_factory_that_raises_is_named_not_a_traceback(monkeypatch):
    from importlib.metadata import EntryPoint

    from kinsul.strategies import registry

    def broken(options):
        raise ZeroDivisionError("division by zero in the plugin")

    monkeypatch.setattr(
        registry, "available", lambda: {"broken": EntryPoint("broken", "x:broken", registry.GROUP)}
    )
    monkeypatch.setattr(EntryPoint, "load", lambda self: broken)
    with pytest.raises(StrategyError, match=r"strategy 'broken' \(entry point x:broken\) failed to build.*"
                                            r"ZeroDivisionError: division by zero in the plugin"):  # fmt: skip
        create("broken")


def test_the_example_plugin_registers_a_strategy_and_its_own_loss_term():
    from kinsul.strategies import losses

    assert available()["anchored"].value == "kinsul_anchor:Anchored.from_options"
    assert {"fm", "fast", "vlm", "anchor"} <= set(losses.available())
    assert create("anchored").loss_weights == {"fm": 1.0, "anchor": 1.0}


def test_anchor_term_is_zero_at_the_pretrained_weights_and_pulls_the_backbone_back(setup):
    """The plugin's own term: no gradient while the backbone equals its pretrained copy; once the backbone has
    moved, the anchor's gradient reaches the backbone and only the backbone."""
    module = module_for("anchored", setup)
    *_, robot, vlm = setup
    ctx_losses = module.compute_losses(TrainBatch(robot))
    assert ctx_losses["anchor"].item() == 0.0
    with torch.no_grad():
        module.vla.lm.layers[0].mlp.up_proj.weight.add_(0.05)
    assert grads_from(module, setup, {"anchor"}) == (True, False)


def test_topk_trains_only_the_top_decoder_layers_and_l2sp_pulls_only_them_back(setup):
    """The tutorial's plugin (tests/plugins/kinsul_topk): the flow loss reaches only the expert (stop-gradient),
    the FAST loss only the top k decoder layers (no vision tower, connector, embeddings, lower layers); L2-SP is
    zero at the pretrained weights and, once the top layer moved, pulls that layer back and nothing else."""
    module = module_for("topk", setup, k=1)
    top, lower = module.vla.lm.layers[-1], module.vla.lm.layers[0]
    weights = dict(module.weights)  # grads_from keeps only the terms it is given
    assert grads_from(module, setup, {"fm"}) == (False, True)
    module.weights = dict(weights)
    grads_from(module, setup, {"fast"})

    def got(part):  # a module or a list of parameters
        params = part.parameters() if isinstance(part, torch.nn.Module) else part
        return any(p.grad is not None and p.grad.abs().sum() > 0 for p in params)

    parts = module.vla.adapter.parts()
    assert got(top) and not got(lower)
    assert not any(got(parts[p]) for p in ("vision_tower", "connector", "embeddings"))
    *_, robot, vlm = setup
    module.weights = dict(weights)
    assert module.compute_losses(TrainBatch(robot))["l2sp"].item() == 0.0
    with torch.no_grad():
        top.mlp.up_proj.weight.add_(0.05)
    module.weights = dict(weights)
    grads_from(module, setup, {"l2sp"})
    assert got(top) and not got(lower) and not got(module.vla.expert)
    assert module_for("topk", setup, k=2).strategy.k == 2


def test_delayed_unfreeze_switches_the_backbone_on_at_its_step(setup):
    module = module_for("delayed_unfreeze", setup, unfreeze_at=5)
    check_groups(module.vla, module.groups)  # the backbone group exists from the start, switched off
    for step, backbone_trains in ((0, False), (4, False), (5, True), (9, True)):
        module.strategy.on_step(step, module.control)
        weights = dict(module.weights)
        assert grads_from(module, setup, {"fm"}) == (backbone_trains, True), step
        module.weights = weights
    with pytest.raises(ConfigError, match="strategy.options.unfreeze_at"):
        create("delayed_unfreeze", {"unfreeze_at": -1})


def test_a_strategys_state_and_loss_weights_travel_in_the_checkpoint(setup):
    """A strategy that keeps state (here: a loss weight it anneals) gets it back from the checkpoint."""

    class Annealing:
        def __init__(self, base):
            self.base, self.calls = base, 0

        def __getattr__(self, name):
            return getattr(self.base, name)

        def on_step(self, step, control):
            self.calls += 1
            control.loss_weights["fm"] = 1.0 / (1 + step)

        def state_dict(self):
            return {"calls": self.calls}

        def load_state_dict(self, state):
            self.calls = state["calls"]

    module = module_for("naive", setup)
    module.strategy = Annealing(module.strategy)
    for step in range(3):
        module.strategy.on_step(step, module.control)
    ckpt: dict = {}
    module.on_save_checkpoint(ckpt)
    assert ckpt["strategy_state"] == {"calls": 3} and ckpt["loss_weights"] == {"fm": pytest.approx(1 / 3)}

    fresh = module_for("naive", setup)
    fresh.strategy = Annealing(fresh.strategy)
    fresh.on_load_checkpoint(ckpt)
    assert fresh.strategy.calls == 3 and fresh.weights == {"fm": pytest.approx(1 / 3)}


def test_a_batch_with_a_wrong_shape_is_named_at_the_boundary(setup):
    from kinsul.data.batch import BatchShapeError

    *_, robot, vlm = setup
    TrainBatch(robot, vlm).check()
    bad = RobotBatch(robot.obs, robot.actions[:, :, 0], robot.action_pad, robot.fast_ids, robot.fast_mask)
    with pytest.raises(BatchShapeError, match=r"robot.actions: expected 3 dimensions"):
        TrainBatch(bad).check()
    short = VLMBatch(vlm.obs, vlm.suffix_ids[:2], vlm.suffix_mask[:2])
    with pytest.raises(BatchShapeError, match=r"vlm.suffix_ids: expected batch size 4"):
        TrainBatch(robot, short).check()


def test_a_plugin_with_a_shape_bug_is_named_not_a_traceback(setup):
    """A strategy whose kv_view returns keys/values of the wrong shape fails naming the strategy and the term."""
    module = module_for("naive", setup)

    class Buggy:
        def __getattr__(self, name):
            return getattr(base, name)

        def kv_view(self, k, v):
            return k[..., :-1], v  # drops a channel: attention fails deep inside the layer loop

    base, module.strategy = module.strategy, Buggy()
    *_, robot, vlm = setup
    with pytest.raises(StrategyError, match="strategy 'naive', loss term 'fm'"):
        module.compute_losses(TrainBatch(robot))


def test_a_loss_term_that_does_not_fit_the_model_is_a_strategy_error_at_a_runs_start(setup, monkeypatch):
    """A run and a sweep's check fit the strategy the same way (`fit_strategy`): a loss term whose setup rejects
    the model is one StrategyError naming the model, not a raw ValueError from inside the module."""
    from kinsul.strategies import losses

    class Picky:
        def setup(self, vla):
            raise ValueError("needs a 12-layer backbone")

        def __call__(self, ctx):
            return torch.zeros(())

    real = losses._factory
    monkeypatch.setattr(losses, "_factory", lambda name: Picky if name == "fast" else real(name))
    with pytest.raises(StrategyError, match=r"a loss term does not fit .*needs a 12-layer"):
        module_for("ki", setup)

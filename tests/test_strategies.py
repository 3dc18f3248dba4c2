"""The physics of the method: which parameters receive gradient from which loss, under each strategy."""

import pytest
import torch

from kinsul.config import ConfigError, load_config
from kinsul.data.batch import Observation
from kinsul.data.tensors import RobotBatch
from kinsul.models.build import build_vla
from kinsul.strategies import StrategyError, available, create
from kinsul.strategies.base import validate
from kinsul.tokenizers.fast import FastTokenizer
from kinsul.training.module import VLAModule, check_groups, resolve_loss_weights
from kinsul.training.pretrain import data_spec, make_tokenizer

BUILTINS = ["naive", "frozen", "stop_grad", "fast_joint", "vlm_cotrain", "ki_no_vlm", "ki", "pi0_fast"]


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
    vlm = (Observation(obs.images, torch.zeros(B, 0), q.ids, q.mask), a.ids, a.mask)
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
    losses = module.compute_losses(robot, vlm)
    sum(losses.values()).backward()

    def touched(m):
        return m is not None and any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())

    return touched(module.vla.backbone), touched(module.vla.expert)


def test_builtins_are_registered_through_entry_points():
    assert set(BUILTINS) <= set(available())


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
    for name in ("naive", "fast_joint", "vlm_cotrain", "ki_no_vlm", "ki"):
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

"""Speed options compute what the eager step computes: the compiled joint layer pass (trainer.compile) and the fused
AdamW (trainer.fused_optimizer) against the plain ones, on the micro model."""

import shutil

import pytest
import torch
from test_strategies import module_for
from test_strategies import setup as setup  # noqa: PLC0414 (the fixture, re-exported for this module)

from kinsul.data.batch import TrainBatch
from kinsul.models.masks import joint_mask
from kinsul.models.mot import matmul_attention
from kinsul.runs.schedule import adamw_warmup_cosine

needs_compiler = pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None,
                                    reason="Inductor needs a C++ compiler on CPU")  # fmt: skip


def step_grads(module, setup):
    """The weighted loss of one training step's terms and every parameter's gradient."""
    *_, robot, vlm = setup
    module.zero_grad(set_to_none=True)
    torch.manual_seed(1)  # the step's noise and flow times
    losses = module.compute_losses(TrainBatch(robot, vlm))
    loss = sum(module.weights[k] * v for k, v in losses.items())
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in module.vla.named_parameters() if p.grad is not None}


@needs_compiler
def test_a_compiled_training_step_matches_the_eager_one(setup):
    """ki's robot pass: FAST tokens on the backbone and the expert behind its stop-gradient in one compiled graph
    (one graph keeps the test to seconds of compiling; the VLM answers' pass is the same function without the
    expert). Equal losses and gradients mean equal physics: which parameters receive gradient is the eager
    step's (tests/test_strategies.py)."""
    grads = []
    for compiled in (False, True):
        module = module_for("ki", setup)
        module.weights = {"fm": 1.0, "fast": 1.0}
        module.vla.compile_layers = compiled
        grads.append(step_grads(module, setup))
    (loss_e, grads_e), (loss_c, grads_c) = grads
    torch.testing.assert_close(loss_c, loss_e, atol=1e-5, rtol=1e-5)
    assert grads_c.keys() == grads_e.keys() and len(grads_e) > 20
    for name in grads_e:
        torch.testing.assert_close(grads_c[name], grads_e[name], atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("heads, kv_heads", [(4, 1), (4, 2), (2, 2)])
def test_matmul_attention_is_sdpa(heads, kv_heads):
    """The compiled CPU step's attention: SDPA's outputs and input gradients under kinsul's real masks (padding
    rows, a causal suffix, expert tokens), grouped queries included."""
    torch.manual_seed(0)
    prefix_valid = torch.rand(3, 9) > 0.3
    prefix_valid[:, 0] = True
    suffix_valid = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    mask = joint_mask(prefix_valid, suffix_valid, n_expert=5)
    T = mask.shape[1]
    q = torch.randn(3, heads, T, 8, requires_grad=True)
    k, v = (torch.randn(3, kv_heads, T, 8, requires_grad=True) for _ in range(2))
    grad = torch.randn(3, heads, T, 8)
    results = []
    for attend in (
        lambda: torch.nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=mask[:, None], scale=0.3, enable_gqa=heads != kv_heads),
        lambda: matmul_attention(q, k, v, mask, 0.3),
    ):  # fmt: skip
        out = attend()
        results.append((out, *torch.autograd.grad(out, (q, k, v), grad)))
    for sdpa, matmul in zip(*results, strict=True):
        torch.testing.assert_close(matmul, sdpa, atol=1e-6, rtol=1e-5)


def test_the_fused_optimizer_takes_the_loops_steps():
    torch.manual_seed(0)
    start = [torch.randn(64, 48), torch.randn(48)]
    finals = []
    for fused in (False, True):
        params = [p.clone().requires_grad_() for p in start]
        opt = adamw_warmup_cosine(params, 1e-3, 0.01, 2, 10, fused=fused)["optimizer"]
        assert opt.defaults["fused"] is (True if fused else None)
        g = torch.Generator().manual_seed(1)
        for _ in range(10):
            for p in params:
                p.grad = torch.randn(p.shape, generator=g)
            opt.step()
        finals.append(params)
    for first, loop, fused in zip(start, *finals, strict=True):
        assert (loop - first).abs().max() > 1e-3  # the steps moved the weights
        torch.testing.assert_close(fused, loop, atol=1e-6, rtol=1e-6)  # the last bit may differ, no more

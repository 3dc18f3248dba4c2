"""Flow matching (pi0): x_t = t * eps + (1 - t) * a, target velocity u = eps - a, Euler from t = 1 to 0."""

from __future__ import annotations

from collections.abc import Callable

import torch


def sample_time(batch: int, alpha: float, beta: float, device=None) -> torch.Tensor:
    """t = 0.999 * s + 0.001, s ~ Beta(alpha, beta): with alpha > beta noisier times (t near 1) are favoured."""
    s = torch.distributions.Beta(torch.tensor(alpha), torch.tensor(beta)).sample((batch,))
    return (0.999 * s + 0.001).to(device)


def interpolate(
    actions: torch.Tensor, noise: torch.Tensor, t: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_t, u): the noisy chunk at time t and the velocity that transports it to the data."""
    tt = t.view(-1, *([1] * (actions.dim() - 1)))
    return tt * noise + (1 - tt) * actions, noise - actions


def euler_sample(velocity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], noise: torch.Tensor,
                 steps: int) -> torch.Tensor:  # fmt: skip
    """Integrate dx/dt = v(x, t) from t = 1 (noise) to t = 0 (actions) in ``steps`` Euler steps."""
    x = noise
    dt = -1.0 / steps
    for k in range(steps):
        t = torch.full((x.shape[0],), 1.0 + k * dt, dtype=x.dtype, device=x.device)
        x = x + dt * velocity(x, t)
    return x

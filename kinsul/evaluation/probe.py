"""VLM probe accuracy per question type: exact match of the greedy answer.

Teacher-forced argmax over the answer (and its <eos>) is exactly greedy decoding's success test: greedy
decoding reproduces the answer iff every next-token argmax is right given the right prefix. So one
forward pass per batch scores it.
"""

from __future__ import annotations

import torch
from torchmetrics.aggregation import MeanMetric

from kinsul.data.tensors import VLMTensors
from kinsul.models.vla import VLA


def exact_match(vla: VLA, obs, suffix: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    logits = vla(obs, suffix, mask).suffix_logits
    pred, target, valid = logits[:, :-1].argmax(-1), suffix[:, 1:], mask[:, 1:]
    return ((pred == target) | ~valid).all(dim=1)


class ProbeAccuracy:
    """Mean exact match per question type, aggregated over batches with torchmetrics."""

    def __init__(self, qtypes: list[str]):
        self.metrics = {q: MeanMetric() for q in qtypes}

    def update(self, correct: torch.Tensor, qtypes: list[str]) -> None:
        for q in set(qtypes):
            sel = torch.tensor([x == q for x in qtypes])
            self.metrics[q].update(correct[sel].float())

    def compute(self) -> dict[str, float]:
        out = {q: float(m.compute()) for q, m in self.metrics.items() if m.update_count}
        out["mean"] = sum(out.values()) / max(1, len(out))
        return out


@torch.no_grad()
def probe_accuracy(vla: VLA, data: VLMTensors, batch_size: int = 250) -> dict[str, float]:
    was_training = vla.training
    vla.eval()
    acc = ProbeAccuracy(sorted(set(data.qtype)))
    pad = vla.tokenizer.pad_id
    for start in range(0, len(data), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(data)))
        obs, suffix, mask = data.batch(idx, pad)
        acc.update(exact_match(vla, obs, suffix, mask), [data.qtype[i] for i in idx.tolist()])
    vla.train(was_training)
    return acc.compute()

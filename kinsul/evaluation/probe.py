"""VLM probe accuracy per question type: exact match of the greedy answer.

Teacher-forced argmax over the answer (and its <eos>) is exactly greedy decoding's success test: greedy
decoding reproduces the answer iff every next-token argmax is right given the right prefix. So one
forward pass per batch scores it.
"""

from __future__ import annotations

import torch
from torch.utils.data import IterableDataset
from torchmetrics.aggregation import MeanMetric

from kinsul.data.tensors import VLMTensors, index_batches
from kinsul.models.vla import VLA, target_logits


def exact_match(vla: VLA, obs, suffix: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    out = vla(obs, suffix, mask)
    logits = target_logits(out.suffix_logits, out.first_logits)
    n_context = suffix.shape[1] - logits.shape[1]
    pred = logits.argmax(-1)
    target, valid = suffix[:, n_context:], mask[:, n_context:]
    return ((pred == target) | ~valid).all(dim=1)


class ProbeAccuracy:
    """Mean exact match per question type, aggregated over batches with torchmetrics."""

    def __init__(self, qtypes: list[str]):
        # float64: in float32, 180 right of 200 reads 0.89999998 and fails a ">= 0.9" goal it meets
        self.metrics = {q: MeanMetric().set_dtype(torch.float64) for q in qtypes}

    def update(self, correct: torch.Tensor, qtypes: list[str]) -> None:
        for q in set(qtypes):
            sel = torch.tensor([x == q for x in qtypes])
            self.metrics[q].update(correct[sel].double())

    def compute(self) -> dict[str, float]:
        out = {q: float(m.compute()) for q, m in self.metrics.items() if m.update_count}
        out["mean"] = sum(out.values()) / max(1, len(out))
        return out


class ProbeBatches(IterableDataset):
    """The probe split in order: (observation, answer ids, answer mask, question types) per batch."""

    def __init__(self, data: VLMTensors, pad_id: int, batch_size: int = 250):
        self.data, self.pad_id, self.batch_size = data, pad_id, batch_size

    def __iter__(self):
        for idx in index_batches(len(self.data), self.batch_size):
            b = self.data.batch(idx, self.pad_id)
            yield b.obs, b.suffix_ids, b.suffix_mask, [self.data.qtype[i] for i in idx.tolist()]


@torch.no_grad()
def probe_accuracy(vla: VLA, data: VLMTensors, batch_size: int = 250) -> dict[str, float]:
    was_training = vla.training
    vla.eval()
    acc = ProbeAccuracy(sorted(set(data.qtype)))
    for obs, suffix, mask, qtypes in ProbeBatches(data, vla.tokenizer.pad_id, batch_size):
        acc.update(exact_match(vla, obs, suffix, mask), qtypes)
    vla.train(was_training)
    return acc.compute()

"""Knowledge retention: the trained backbone's VLM probe accuracy relative to the pretrained VLM's."""

from __future__ import annotations

from kinsul.data.tensors import VLMTensors
from kinsul.evaluation.probe import probe_accuracy
from kinsul.models.vla import VLA


def retention(trained: VLA, pretrained: VLA, probe: VLMTensors) -> dict[str, float]:
    """eval/probe_acc_<type>, eval/probe_acc (mean over types) and eval/retention = trained / pretrained."""
    now = probe_accuracy(trained, probe)
    before = probe_accuracy(pretrained, probe)
    out = {f"eval/probe_acc_{q}": v for q, v in now.items() if q != "mean"}
    out["eval/probe_acc"] = now["mean"]
    out["eval/probe_acc_pretrained"] = before["mean"]
    out["eval/retention"] = now["mean"] / before["mean"] if before["mean"] > 0 else float("nan")
    return out

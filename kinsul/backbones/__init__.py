"""VLM backbones behind one adapter interface (``base.BackboneAdapter``), one module per family."""

from kinsul.backbones.base import BackboneAdapter, BackboneError
from kinsul.backbones.idefics3 import Idefics3Adapter
from kinsul.backbones.paligemma import PaliGemmaAdapter

# config.json model_type -> adapter
FAMILIES: dict[str, type[BackboneAdapter]] = {a.model_type: a for a in (PaliGemmaAdapter, Idefics3Adapter)}

__all__ = ["FAMILIES", "BackboneAdapter", "BackboneError", "Idefics3Adapter", "PaliGemmaAdapter"]

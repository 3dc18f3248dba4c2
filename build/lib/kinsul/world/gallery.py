"""A picture of rendered scenes with their instructions, for the docs."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from kinsul.world.env import KinsulWorldEnv

SCALE = 4
CAPTION_H = 34


def _wrap(text: str, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if len(line) + len(word) + 1 > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return [*lines, line]


def gallery(env: KinsulWorldEnv, out: str | Path, per_family: int = 4, seed: int = 0) -> Path:
    """Rows = task families (plus one row of held-out-concept tasks), columns = seeds."""
    rows = [(family, "seen") for family in env.config.tasks] + [(env.config.tasks[0], "heldout")]
    s = env.config.image_size * SCALE
    canvas = Image.new("RGB", (per_family * (s + 8) + 8, len(rows) * (s + CAPTION_H + 8) + 8), "white")
    draw = ImageDraw.Draw(canvas)
    for r, (family, mode) in enumerate(rows):
        for c in range(per_family):
            obs, _ = env.reset(seed=seed + 1000 * r + c, options={"task": family, "concepts": mode})
            tile = Image.fromarray(obs["image"]).resize((s, s), Image.NEAREST)
            x, y = 8 + c * (s + 8), 8 + r * (s + CAPTION_H + 8)
            canvas.paste(tile, (x, y))
            label = obs["instruction"] + (" [held-out]" if mode == "heldout" else "")
            for k, line in enumerate(_wrap(label, s // 6)[:3]):
                draw.text((x, y + s + 2 + 10 * k), line, fill="black")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out)
    return out

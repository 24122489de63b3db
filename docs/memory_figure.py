"""Draw ``_static/memory.png``: segments, slots and the LRU write (``python docs/memory_figure.py``)."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

L, SEGMENTS, SLOTS = 4, 5, 2
fig, ax = plt.subplots(figsize=(9, 3.2))
for s in range(SEGMENTS):
    for i in range(L):
        t = s * L + i
        ax.add_patch(plt.Rectangle((t, 2.2), 0.9, 0.6, color=f"C{s}", alpha=0.35))
        ax.text(t + 0.45, 2.5, str(t), ha="center", va="center", fontsize=7)
    ax.text(s * L + L / 2 - 0.05, 3.05, f"segment {s}", ha="center", fontsize=8)
anchors = [-1] * SLOTS
for s in range(SEGMENTS):
    end = s * L + L - 1
    empty = [j for j, a in enumerate(anchors) if a < 0]
    slot = empty[0] if empty else min(range(SLOTS), key=lambda j: anchors[j])
    how = "replace (empty)" if empty else "blend: m <- lam*u + (1-lam)*m"
    anchors[slot] = end
    y = 1.2 - slot * 0.8
    ax.annotate(
        "", xy=(end + 0.45, y + 0.3), xytext=(end + 0.45, 2.15), arrowprops=dict(arrowstyle="->", color=f"C{s}")
    )
    ax.add_patch(plt.Rectangle((end - 0.5, y - 0.05), 1.9, 0.35, color=f"C{s}", alpha=0.6))
    ax.text(end + 0.45, y + 0.12, f"anchor {end}", ha="center", va="center", fontsize=6.5)
    ax.text(end + 0.45, y - 0.22, how, ha="center", va="center", fontsize=5.5)
for j in range(SLOTS):
    ax.text(-0.3, 1.32 - j * 0.8, f"slot {j}", ha="right", va="center", fontsize=8)
ax.text(
    -0.3,
    -0.75,
    "Each completed segment writes one slot per layer: the first empty one, else the one with the oldest anchor.\n"
    "Tokens read every slot, biased by their distance t - anchor; self-attention sees the current segment"
    " (with sliding_window: the last L steps, back into the previous segment).",
    fontsize=7.5,
    va="top",
)
ax.set_xlim(-2.5, SEGMENTS * L + 1)
ax.set_ylim(-1.3, 3.4)
ax.axis("off")
fig.savefig(Path(__file__).resolve().parent / "_static" / "memory.png", dpi=150, bbox_inches="tight")

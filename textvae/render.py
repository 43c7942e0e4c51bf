"""An interpolation path as a picture: each step's text, with the characters that changed since the
previous step highlighted (HTML page, or PNG through matplotlib)."""

from __future__ import annotations

import difflib
import html
from pathlib import Path
from typing import Sequence


def changed_spans(before: str, after: str) -> list[tuple[str, bool]]:
    """`after` cut into (text, changed) pieces, relative to `before` (insertions and replacements)."""
    pieces: list[tuple[str, bool]] = []
    for op, _, _, j1, j2 in difflib.SequenceMatcher(a=before, b=after, autojunk=False).get_opcodes():
        if j2 > j1:
            pieces.append((after[j1:j2], op != "equal"))
    return pieces


def interpolation_html(texts: Sequence[str], fractions: Sequence[float], title: str = "interpolation") -> str:
    rows = []
    for i, (t, f) in enumerate(zip(texts, fractions)):
        spans = [(t, False)] if i == 0 else changed_spans(texts[i - 1], t)
        cells = "".join(f'<mark>{html.escape(p)}</mark>' if changed else html.escape(p) for p, changed in spans)
        rows.append(f"<tr><td class='f'>{f:.2f}</td><td class='t'>{cells or '&nbsp;'}</td></tr>")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; }}
td {{ padding: 0.25em 0.8em; border-bottom: 1px solid #ddd; }}
td.f {{ color: #888; font-variant-numeric: tabular-nums; }}
td.t {{ font-family: ui-monospace, monospace; white-space: pre-wrap; }}
mark {{ background: #ffd54f; }}
</style></head>
<body><h2>{html.escape(title)}</h2>
<p>Each row decodes a point on the path between two codes; highlighted characters changed since the row above.</p>
<table>
{chr(10).join(rows)}
</table></body></html>
"""


def interpolation_png(texts: Sequence[str], fractions: Sequence[float], out: Path, title: str = "interpolation") -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.font_manager import FontProperties

    size = 11
    font = FontProperties(family="DejaVu Sans Mono", size=size)
    longest = max([len(t) for t in texts] + [10])
    char_in = 0.6 * size / 72                 # a DejaVu Sans Mono character is 0.6 em wide
    width = min(max(4.0, char_in * (longest + 8) + 0.4), 40.0)
    n = len(texts)
    height = 0.4 * n + 0.8
    fig = plt.figure(figsize=(width, height))
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_axis_off()
    char_w = char_in / width                  # one character, in axes units
    ax.text(0.01, 1 - 0.25 / height, title, fontsize=12, weight="bold", va="top")
    for i, (t, f) in enumerate(zip(texts, fractions)):
        y = 1 - (0.4 * i + 0.75) / height
        ax.text(0.01, y, f"{f:.2f}", fontproperties=font, color="#888", va="center")
        x0 = 0.01 + 6 * char_w
        spans = [(t, False)] if i == 0 else changed_spans(texts[i - 1], t)
        k = 0
        for piece, changed in spans:           # one character at a time, on a fixed grid
            for ch in piece:
                if changed:
                    ax.add_patch(plt.Rectangle((x0 + k * char_w, y - 0.13 / height), char_w, 0.26 / height,
                                               color="#ffd54f", transform=ax.transAxes, zorder=0))
                ax.text(x0 + (k + 0.5) * char_w, y, ch, fontproperties=font, va="center", ha="center", zorder=1)
                k += 1
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out

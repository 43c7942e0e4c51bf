"""Results as tables and pictures: the figure tables the command line prints (rich), and an interpolation
path with the characters that changed since the previous step highlighted (HTML page, or PNG through
matplotlib). Nothing here prints."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from ..evaluation.metrics import changed_spans


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


def interpolation_png(texts: Sequence[str], fractions: Sequence[float], out, title: str = "interpolation"):
    """The path as a PNG, into `out` (a path or a binary file)."""
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
    fig.savefig(out, dpi=120, format="png")
    plt.close(fig)
    return out


def _rows(table: Table, rows, results: list[dict]) -> Table:
    """Rows (label, key or dotted key, format) of figures, one column per result; empty rows left out."""
    def get(r, key):
        for part in key.split("."):
            r = (r or {}).get(part)
        return r

    for label, key, fmt in rows:
        cells = ["" if get(r, key) is None else fmt.format(get(r, key)) for r in results]
        if any(cells):
            table.add_row(label, *cells)
    return table


def summary_table(final: dict, out_dir: Path) -> Table:
    """The best validation figures of a finished run."""
    table = Table(title=f"run {out_dir} ({final.get('reason', '?')} after {final.get('step', 0)} steps, "
                        f"{final.get('time', 0) / 60:.1f} min)")
    table.add_column("best validation", style="bold")
    table.add_column("value", justify="right")
    rows = [("epoch", "epoch", "{:d}"), ("-ELBO per item (nats)", "nll_elbo", "{:.3f}"),
            ("  reconstruction", "recon", "{:.3f}"), ("  KL", "kl", "{:.3f}"),
            ("nats per character", "nats_per_char", "{:.4f}"), ("bits per character", "bits_per_char", "{:.4f}"),
            ("active units", "active_units", "{:d}"), ("exact reconstruction", "exact", "{:.1%}"),
            ("character accuracy", "char_accuracy", "{:.1%}")]
    return _rows(table, rows, [final.get("best") or {}])


EVAL_ROWS = [("items", "items", "{:,}"), ("IW-NLL per item (nats)", "iw_nll", "{:.3f}"),
             ("IW-NLL per char (nats)", "iw_nats_per_char", "{:.4f}"),
             ("IW-NLL per char (bits)", "iw_bits_per_char", "{:.4f}"),
             ("perplexity per char", "perplexity", "{:.3f}"), ("importance samples K", "samples", "{:d}"),
             ("-ELBO per item", "nll_elbo", "{:.3f}"), ("-ELBO per char", "elbo_nats_per_char", "{:.4f}"),
             ("  reconstruction", "recon", "{:.3f}"), ("  KL", "kl", "{:.3f}"),
             ("mutual information I(x;z)", "mi", "{:.3f}"), ("active units", "active_units", "{:d}"),
             ("exact reconstruction", "reconstruction.exact", "{:.1%}"),
             ("character accuracy", "reconstruction.char_accuracy", "{:.1%}"),
             ("mean edit distance", "reconstruction.edit_distance", "{:.2f}"),
             ("reconstructions that run away", "reconstruction.runaway", "{:.1%}"),
             ("samples new (not in training)", "sampling.new", "{:.1%}"),
             ("real words in samples", "sampling.real_words", "{:.1%}"),
             ("greedy prior decodings that run away", "greedy_prior.runaway", "{:.1%}"),
             ("interpolation endpoint fidelity", "interpolation.endpoint_fidelity", "{:.1%}"),
             ("  edit distance between steps", "interpolation.step_edit_distance", "{:.1f}"),
             ("  real words in middle steps", "interpolation.middle_real_words", "{:.1%}"),
             ("  middle steps, IW-NLL per char", "interpolation.middle_nats_per_char", "{:.3f}"),
             ("  middle steps, judge's perplexity / held-out's", "interpolation.judge.judge_ratio", "{:.2f}"),
             ("  middle steps equal to neither end", "interpolation.judge.new_middles", "{:.1%}"),
             ("  middle steps copied from training", "interpolation.judge.copied", "{:.1%}"),
             ("samples, judge's perplexity / held-out's", "fluency.judge_ratio", "{:.2f}"),
             ("  real words (held-out text)", "fluency.real_words_held_out", "{:.1%}"),
             ("  distinct-2 / held-out's", "fluency.distinct_2_ratio", "{:.2f}"),
             ("  reverse perplexity / training text's", "fluency.reverse_ppl_ratio", "{:.2f}"),
             ("samples copied from training", "sampling.copied", "{:.1%}"),
             ("duplicate samples", "sampling.duplicates", "{:.1%}"),
             ("distinct-1", "sampling.distinct_1", "{:.3f}"), ("distinct-2", "sampling.distinct_2", "{:.3f}"),
             ("classifier accuracy (held-out)", "labels.classifier_accuracy", "{:.1%}"),
             ("samples carrying the asked label", "labels.label_agreement", "{:.1%}"),
             ("seconds", "seconds", "{:.1f}")]


def evaluation_table(results: list[dict], names: list[str]) -> Table:
    """`textvae evaluate`'s figures, one column per model."""
    table = Table(title="held-out evaluation")
    table.add_column("metric", style="bold")
    for name in names:
        table.add_column(name, justify="right")
    return _rows(table, EVAL_ROWS, results)


def label_lines(results: list[dict], names: list[str]) -> list[str]:
    """What the label judge made of each model's samples, a line per model that has labels."""
    lines = []
    for name, r in zip(names, results):
        lab = r.get("labels") or {}
        prior = ", ".join(f"{y} {p:.1%}" for y, p in lab.get("class_prior", {}).items())
        for key, what in (("label_agreement_by_label", "samples judged to carry the asked label"),
                          ("predicted_label_shares", "labels the judge gives its samples")):
            if key in lab:
                per = ", ".join(f"{y} {p:.1%}" for y, p in lab[key].items())
                lines.append(f"{name}: {what}: {per} (class prior: {prior})")
    return lines


def bench_table(cfg, r: dict) -> Table:
    """`textvae bench`'s medians."""
    table = Table(title=f"textvae bench: {cfg.cell.upper()} E{cfg.embed_dim} H{cfg.hidden_dim} "
                        f"encoder {r['encoder_dim']} Z{cfg.latent_dim}, batch {cfg.batch_size} "
                        f"x {cfg.seq_len} chars, {r['device']} ({r.get('gpu') or str(r['threads']) + ' threads'})")
    table.add_column("figure", style="bold")
    table.add_column("median", justify="right")
    rows = [("bare RNN kernels, forward+backward (chars/s)", "kernel_chars_per_s", "{:,.0f}"),
            ("textvae training loop (chars/s)", "train_chars_per_s", "{:,.0f}"),
            ("  share of the kernel figure", "train_vs_kernel", "{:.0%}"),
            ("one item per step (chars/s)", "one_at_a_time_chars_per_s", "{:,.0f}"),
            ("  batched speed-up", "speedup_vs_one_at_a_time", "{:.1f}x"),
            ("generation (items/s)", "generate_items_per_s", "{:,.0f}"), ("peak memory (MB)", "peak_memory_mb", "{:,.0f}")]
    return _rows(table, rows, [r])


def valid_line(ev: dict) -> str:
    """A validation's figures in one line (rich markup)."""
    line = (f"epoch {ev['epoch']}: valid -ELBO {ev['nll_elbo']:.3f}/item ({ev['nats_per_char']:.3f} nats/char), "
            f"rec {ev['recon']:.3f}, KL {ev['kl']:.3f}, MI {ev.get('mi', 0):.2f}, AU {ev['active_units']}")
    if "exact" in ev:
        line += f", exact {100 * ev['exact']:.1f}%"
    return line + ("  [green]best[/]" if ev["best"] else "")


def plan_line(ev: dict) -> str:
    """The budget a run planned, in one line."""
    plan = ev["plan"]
    line = f"budget: {escape(plan['why'])}; batches of {ev['batch_size']}"
    if plan.get("estimate_s"):
        line += f"; estimated time {plan['estimate_s'] / 60:.1f} min"
    if plan.get("threads"):
        line += f"; {plan['threads']} CPU thread{'s' if plan['threads'] > 1 else ''} (measured fastest)"
    if ev.get("valid_items", 0) < ev.get("valid_of", 0):
        line += f"; validating on {ev['valid_items']:,} of the {ev['valid_of']:,} validation items"
    return line


def refit_line(ev: dict) -> str:
    """The budget refitted to the run's own pace (a budget in time)."""
    return (f"pace: {ev['step_s']:.3g} s a step and {ev['valid_s']:.0f} s a validation on this run: "
            f"{ev['total_steps']:,} steps in all instead of {ev['before']:,}, "
            f"estimated time {ev['estimate_s'] / 60:.1f} min")

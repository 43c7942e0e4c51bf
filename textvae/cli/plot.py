"""Pictures of a run: training curves from metrics.jsonl, and a 2-D map of posterior means.

matplotlib is an optional extra (`pip install 'textvae[plot]'`); nothing else imports this module.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..evaluation.metrics import principal_plane


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def read_metrics(run_dir: Path) -> tuple[list[dict], list[dict]]:
    steps, epochs = [], []
    path = Path(run_dir) / "metrics.jsonl"
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue                      # a line cut short by an interrupted run
        (steps if rec.get("kind") == "step" else epochs).append(rec)
    return steps, epochs


def training_curves(run_dir: Path, out: Path) -> Path:
    """Reconstruction, KL and beta per step; validation -ELBO per character and KL per epoch."""
    plt = _pyplot()
    steps, epochs = read_metrics(run_dir)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    x = [r["step"] for r in steps]
    axes[0].plot(x, [r["recon"] for r in steps], label="reconstruction (train)")
    axes[0].plot(x, [r["kl"] for r in steps], label="KL (train)")
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("nats per item")
    axes[0].legend()
    axes[1].plot(x, [r["beta"] for r in steps], color="tab:gray")
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("beta (KL weight)")
    if epochs:
        ex = [r["step"] for r in epochs]
        axes[2].plot(ex, [r["nats_per_char"] for r in epochs], "o-", label="-ELBO per char (valid)")
        if "iw_nats_per_char" in epochs[0]:
            axes[2].plot(ex, [r["iw_nats_per_char"] for r in epochs], "s-", label="IW-NLL per char (valid)")
        axes[2].set_xlabel("step")
        axes[2].set_ylabel("nats per character")
        ax2 = axes[2].twinx()
        ax2.plot(ex, [r["kl"] for r in epochs], "^--", color="tab:red", label="KL (valid)")
        ax2.set_ylabel("KL, nats per item")
        axes[2].legend(loc="upper right")
    fig.suptitle(f"training curves: {Path(run_dir).name}")
    fig.tight_layout()
    fig.savefig(out, dpi=110, format="png")
    plt.close(fig)
    return out


def pca_2d(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project rows of x onto their two principal components; also the explained variance ratios."""
    _, _, xy, variance = principal_plane(x)
    return xy, variance


def latent_map(mu: np.ndarray, texts: Sequence[str], out: Path, labels: Sequence[str] | None = None,
               annotate: int = 12, title: str = "") -> Path:
    """Posterior means of held-out items on their first two principal components,
    coloured by label when given, else by length; a few items written beside their points."""
    plt = _pyplot()
    xy, ratio = pca_2d(mu)
    fig, ax = plt.subplots(figsize=(8, 7))
    if labels is not None:
        names = sorted(set(labels))
        for name in names:
            sel = np.array([lab == name for lab in labels])
            ax.scatter(xy[sel, 0], xy[sel, 1], s=6, alpha=0.6, label=str(name))
        ax.legend(title="label", markerscale=3)
    else:
        sc = ax.scatter(xy[:, 0], xy[:, 1], s=6, alpha=0.6, c=[len(t) for t in texts], cmap="viridis")
        fig.colorbar(sc, ax=ax, label="length (characters)")
    rng = np.random.default_rng(0)
    for i in rng.choice(len(texts), size=min(annotate, len(texts)), replace=False):
        label = texts[i] if len(texts[i]) <= 30 else texts[i][:27] + "..."
        ax.annotate(label, xy[i], fontsize=8, alpha=0.9)
    ax.set_xlabel(f"PC 1 ({ratio[0]:.0%} of variance)")
    ax.set_ylabel(f"PC 2 ({ratio[1]:.0%} of variance)")
    ax.set_title(title or "posterior means of held-out items (PCA)")
    fig.tight_layout()
    fig.savefig(out, dpi=110, format="png")
    plt.close(fig)
    return out

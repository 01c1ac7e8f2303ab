"""The training plot: validation HR@10 / NDCG@10 against rounds (and ε when private)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_training(result: Any, path: Path) -> None:
    """Draw ``result.history`` into a PNG at ``path`` (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [h for h in result.history if h.get("val_hr@10") is not None]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    rounds = [h["round"] for h in rows]
    ax.plot(rounds, [h["val_hr@10"] for h in rows], marker="o", ms=3, label="HR@10 (val)")
    ax.plot(rounds, [h["val_ndcg@10"] for h in rows], marker="s", ms=3, label="NDCG@10 (val)")
    if result.best_round:
        ax.axvline(result.best_round, color="grey", ls=":", lw=1,
                   label=f"chosen round {result.best_round}")
    c = result.config
    xlabel = "epoch" if c.centralized else "round"
    ax.set_xlabel(xlabel)
    ax.set_ylabel("metric on validation")
    ax.set_ylim(0, max(0.7, max([h["val_hr@10"] for h in rows], default=0) + 0.05))
    ax.grid(alpha=0.3)
    how = (
        "centralized"
        if c.centralized
        else f"{c.partition}, secagg={'on' if c.secagg else 'off'}, "
        f"dp={'on' if c.dp else 'off'}"
    )
    title = f"{c.model} on {c.dataset}, {how}"
    test = result.test.get("HR@10")
    if test is not None:
        title += f"\ntest HR@10 {test:.3f} at the chosen {xlabel}"
    ax.set_title(title, fontsize=10)
    eps_rows = [h for h in rows if h.get("epsilon") is not None]
    if eps_rows:
        ax2 = ax.twinx()
        ax2.plot([h["round"] for h in eps_rows], [h["epsilon"] for h in eps_rows],
                 color="tab:red", ls="--", label="max ε per client")
        ax2.set_ylabel(f"ε (δ={c.delta:g})", color="tab:red")
        ax2.legend(loc="lower right", fontsize=8)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)

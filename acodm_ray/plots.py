"""PNG plots of weight trajectories and validation curves (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_weight_trajectories(
    trajectories: dict[str, np.ndarray], domains: Sequence[str], path: str | Path, title: str = "domain weights"
) -> Path:
    """One panel per method: stacked domain weights against steps."""
    names = list(trajectories)
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.5), sharey=True, squeeze=False)
    for ax, name in zip(axes[0], names):
        w = np.asarray(trajectories[name])
        steps = np.arange(1, len(w) + 1)
        ax.stackplot(steps, w.T, labels=list(domains))
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.set_ylim(0, 1)
    axes[0][0].set_ylabel("weight")
    axes[0][-1].legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_curves(
    curves: dict[str, tuple[Sequence[float], Sequence[float], Sequence[float] | None]],
    path: str | Path,
    ylabel: str = "average validation perplexity",
) -> Path:
    """Curves {label: (steps, mean, spread or None)}, drawn with a shaded ± spread band."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, (x, mean, spread) in curves.items():
        x, mean = np.asarray(x), np.asarray(mean)
        ax.plot(x, mean, label=label)
        if spread is not None:
            spread = np.asarray(spread)
            ax.fill_between(x, mean - spread, mean + spread, alpha=0.2)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

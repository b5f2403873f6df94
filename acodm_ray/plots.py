"""PNG plots of weight trajectories and validation curves (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402


def plot_weight_trajectories(
    trajectories: dict[str, np.ndarray],
    domains: Sequence[str],
    path: str | Path,
    title: str = "domain weights",
    ncols: int | None = None,
    dpi: int = 110,
) -> Path:
    """One panel per method: stacked domain weights against steps (one row, or `ncols` per row)."""
    names = list(trajectories)
    ncols = len(names) if ncols is None else max(1, min(ncols, len(names)))
    nrows = -(-len(names) // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(4.5 * ncols, 3.5 * nrows), sharey=True, squeeze=False
    )
    for ax, name in zip(axes.flat, names):
        w = np.asarray(trajectories[name])
        steps = np.arange(1, len(w) + 1)
        ax.stackplot(steps, w.T, labels=list(domains))
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.set_ylim(0, 1)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    for row in axes:
        row[0].set_ylabel("weight")
    axes.flat[len(names) - 1].legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.3 / (3.5 * nrows)))  # room for the title above the panels
    path = Path(path)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def plot_curves(
    curves: dict[str, tuple[Sequence[float], Sequence[float], Sequence[float] | None]],
    path: str | Path,
    ylabel: str = "average validation perplexity",
    title: str | None = None,
) -> Path:
    """Curves {label: (steps, mean, spread or None)}, drawn with a shaded ± spread band."""
    fig, ax = plt.subplots(figsize=(6, 4))
    if title:
        ax.set_title(title, fontsize=10)
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


def plot_curve_panels(
    panels: dict[str, dict[str, tuple[Sequence[float], Sequence[float], Sequence[float] | None]]],
    path: str | Path,
    ylabel: str = "validation perplexity",
    ncols: int = 4,
    logy: bool = True,
    title: str | None = None,
) -> Path:
    """One panel per entry of `panels` ({panel title: {label: (steps, mean, spread or None)}}), the
    same labels in the same colours in every panel, one legend for the figure."""
    names = list(panels)
    ncols = max(1, min(ncols, len(names)))
    nrows = -(-len(names) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 2.9 * nrows), squeeze=False)
    labels: list[str] = []
    for curves in panels.values():
        labels += [lb for lb in curves if lb not in labels]
    colours = {lb: f"C{i % 10}" for i, lb in enumerate(labels)}
    for ax, name in zip(axes.flat, names):
        for label, (x, mean, spread) in panels[name].items():
            x, mean = np.asarray(x, dtype=float), np.asarray(mean, dtype=float)
            ax.plot(x, mean, color=colours[label], label=label, lw=1.3)
            if spread is not None:
                spread = np.asarray(spread, dtype=float)
                ax.fill_between(
                    x, mean - spread, mean + spread, color=colours[label], alpha=0.18, lw=0
                )
        ax.set_title(name, fontsize=9)
        values = np.concatenate(
            [np.asarray(m, dtype=float) for _, m, _ in panels[name].values()] or [np.ones(1)]
        )
        values = values[np.isfinite(values) & (values > 0)]
        if (
            logy and values.size and values.max() / values.min() > 2
        ):  # log only where it spans a range
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.tick_params(labelsize=7)
        ax.set_xlabel("step", fontsize=8)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    for row in axes:
        row[0].set_ylabel(ylabel, fontsize=8)
    handles = [plt.Line2D([], [], color=colours[lb], label=lb) for lb in labels]
    fig.legend(
        handles=handles, loc="lower center", ncol=min(len(labels), 6), fontsize=8, frameon=False
    )
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.06 if nrows > 1 else 0.1, 1, 1))
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path

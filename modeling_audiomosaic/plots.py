"""Plots of the demo and the studies (training loss, probe accuracy bars, masked views, embedding maps), as PNG files.

Used by run_scripts/run_demo.py, run_system_comparison.py and run_speech_study.py. matplotlib is imported on first use
and never through pyplot: every figure is a `matplotlib.figure.Figure` on its own Agg canvas, so plotting neither
needs nor changes the process's interactive backend. Each function returns its figure (already saved).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def new_figure(figsize: tuple[float, float], nrows: int = 1, ncols: int = 1, **subplot_kw) -> tuple[Figure, Axes]:
    """A figure on its own Agg canvas (no pyplot) and its axes, as `pyplot.subplots(nrows, ncols, figsize=...)`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, **subplot_kw)


def colormap(name: str, count: int | None = None):
    """matplotlib's colormap `name`, resampled to `count` colours if given (as `pyplot.get_cmap(name, count)`)."""
    import matplotlib

    cmap = matplotlib.colormaps[name]
    return cmap if count is None else cmap.resampled(count)


def plot_training_loss(log_history: list[dict], path: Path, title: str = "AudioMosaic pre-training") -> Figure:
    """Loss (and positive-pair accuracy on a second axis) against the optimizer step."""
    rows = [h for h in log_history if "loss" in h and "step" in h]
    if not rows:  # fewer steps than the logging interval: fall back to the run's mean training loss
        rows = [{"step": h["step"], "loss": h["train_loss"]} for h in log_history if "train_loss" in h]
    steps = [h["step"] for h in rows]
    fig, ax = new_figure((6.4, 3.4))
    ax.plot(steps, [h["loss"] for h in rows], color="tab:blue", lw=1.2, label="NT-Xent loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss", color="tab:blue")
    if any("accuracy" in h for h in rows):
        ax2 = ax.twinx()
        ax2.plot(steps, [h.get("accuracy", np.nan) for h in rows], color="tab:orange", lw=1.0, alpha=0.8)
        ax2.set_ylabel("positive-pair top-1 accuracy", color="tab:orange")
        ax2.set_ylim(0, 1)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return fig


def distinct_colors(count: int) -> list[tuple[float, float, float, float]]:
    """`count` colours that are all different: tab10 up to 10, tab20 up to 20, else evenly spaced hues (matplotlib's
    default cycle wraps after 10, so an 11th series would repeat the first one's colour)."""
    if count <= 10:
        return [colormap("tab10")(i) for i in range(count)]
    if count <= 20:
        return [colormap("tab20")(i) for i in range(count)]
    return [colormap("hsv")(i / count) for i in range(count)]


def grouped_bars(groups: list[str], series: dict[str, list[float]], errors: dict[str, list[float]] | None = None,
                 ylabel: str = "", title: str = "", figsize: tuple[float, float] = (7.0, 3.6), values: bool = True,
                 ylim: float = 1.0) -> Figure:
    """Grouped bar chart with one distinct colour per series and the legend BELOW the axes (never over the bars).

    `series[name][g]` is the bar of series `name` in group `groups[g]`; `errors` (same shape) adds error bars;
    `values` writes each bar's value above it. Returns the figure (the caller saves it)."""
    names = list(series)
    width = 0.8 / max(len(names), 1)
    fig, ax = new_figure(figsize)
    for i, (name, color) in enumerate(zip(names, distinct_colors(len(names)))):
        heights = np.asarray(series[name], dtype=float)
        bars = ax.bar(np.arange(len(groups)) + i * width - 0.4 + width / 2, heights, width, label=name, color=color,
                      yerr=None if errors is None else errors[name], capsize=2 if errors is not None else 0)
        if values:
            for bar, value in zip(bars, heights):
                ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 0.01, f"{value:.2f}", ha="center",
                        va="bottom", fontsize=7)
    ax.set_xticks(np.arange(len(groups)))
    ax.set_xticklabels(groups)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, ylim)
    ax.set_title(title, fontsize=10)
    ncol = min(len(names), 3 if max((len(n) for n in names), default=0) > 20 else 4)
    ax.legend(fontsize=7, ncol=ncol, loc="upper center", bbox_to_anchor=(0.5, -0.1), frameon=False)
    fig.tight_layout()
    return fig


def plot_probe_bars(results: dict[str, dict[str, float]], path: Path, metric: str = "accuracy") -> Figure:
    """Grouped bars: one group per task, one bar per model (pre-trained, random init, log-mel + LR, ...)."""
    tasks = list(results)
    models = list(next(iter(results.values())))
    series = {model: [results[task].get(model, np.nan) for task in tasks] for model in models}
    fig = grouped_bars(tasks, series, ylabel=f"test {metric}", ylim=1.05,
                       title="Linear probe on the offline tasks (test split)")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig


def plot_masked_views(views: torch.Tensor, ids_keep: list[torch.Tensor | None], patch_size: int, path: Path,
                      titles: tuple[str, str] = ("view 0: time-masked", "view 1: frequency-masked")) -> Figure:
    """One clip's two augmented views with the dropped patches greyed out. `views` (2, T, F); `ids_keep` per view."""
    fig, axes = new_figure((9.0, 3.2), 1, len(views), sharey=True)
    for ax, view, ids, title in zip(np.atleast_1d(axes), views, ids_keep, titles):
        spec = view.T.numpy().copy()  # (F, T)
        num_t, num_f = view.shape[0] // patch_size, view.shape[1] // patch_size
        if ids is not None:
            keep = np.zeros(num_t * num_f, dtype=bool)
            keep[ids.numpy()] = True
            keep = keep.reshape(num_t, num_f)  # time-major tokens
            mask = np.repeat(np.repeat(~keep, patch_size, axis=0), patch_size, axis=1).T  # (F, T)
            spec = np.ma.masked_array(spec, mask=mask)
        ax.imshow(spec, origin="lower", aspect="auto", cmap="magma", interpolation="nearest")
        ax.set_facecolor("#d0d0d0")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("frame (10 ms)")
    np.atleast_1d(axes)[0].set_ylabel("mel bin")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return fig


def plot_embedding_map(embeddings: np.ndarray, labels: list[str], path: Path, title: str) -> Figure:
    """2-D map (PCA to 50 dims, then t-SNE) of embeddings coloured by class."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    x = embeddings - embeddings.mean(0)
    if x.shape[1] > 50 and x.shape[0] > 50:
        x = PCA(n_components=50, random_state=0).fit_transform(x)
    perplexity = max(5.0, min(30.0, (len(x) - 1) / 3))
    xy = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=0).fit_transform(x)
    classes = sorted(set(labels))
    cmap = colormap("tab20", len(classes))
    fig, ax = new_figure((6.0, 5.0))
    for i, name in enumerate(classes):
        sel = np.array([label == name for label in labels])
        ax.scatter(xy[sel, 0], xy[sel, 1], s=9, color=cmap(i), label=name)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title)
    ax.legend(fontsize=6, markerscale=1.5, ncol=2, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return fig


def plot_loss_curves(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, window: int,
                     reference: str | None = None, title: str = "pre-training loss") -> Figure:
    """Smoothed loss curves (left) and, with `reference`, every curve's smoothed difference to it (right).

    `curves[name] = (steps, losses)`; smoothing is `precision_study.smooth` (centred moving average of `window`
    steps); the raw losses are drawn faintly behind. Used by run_scripts/run_bf16_study.py."""
    from .precision_study import smooth

    panels = 2 if reference is not None else 1
    fig, axes = new_figure((5.2 * panels, 3.6), 1, panels)
    axes = np.atleast_1d(axes)
    colors = dict(zip(curves, distinct_colors(len(curves))))
    for name, (steps, losses) in curves.items():
        style = "--" if name.startswith("bf16") else "-"
        axes[0].plot(steps, losses, color=colors[name], lw=0.5, alpha=0.25)
        axes[0].plot(steps, smooth(losses, window), style, color=colors[name], lw=1.4, label=name)
    axes[0].set_xlabel("optimizer step")
    axes[0].set_ylabel(f"loss ({window}-step moving average)")
    axes[0].set_title(title, fontsize=10)
    axes[0].legend(fontsize=8)
    if reference is not None:
        ref_steps, ref_losses = curves[reference]
        ref = dict(zip(ref_steps.tolist(), smooth(ref_losses, window)))
        for name, (steps, losses) in curves.items():
            if name == reference:
                continue
            keep = [i for i, s in enumerate(steps.tolist()) if s in ref]
            diff = smooth(losses, window)[keep] - np.array([ref[s] for s in steps[keep].tolist()])
            style = "--" if name.startswith("bf16") else "-"
            axes[1].plot(steps[keep], diff, style, color=colors[name], lw=1.4, label=f"{name} − {reference}")
        axes[1].axhline(0.0, color="grey", lw=0.8)
        axes[1].set_xlabel("optimizer step")
        axes[1].set_ylabel("difference of the smoothed losses")
        axes[1].set_title(f"difference to {reference}", fontsize=10)
        axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return fig

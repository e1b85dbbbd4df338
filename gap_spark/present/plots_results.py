"""Figures of a run's results: feature shifts, per-class accuracy, reliability diagrams, confused pairs."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from gap_spark.contracts.run_outputs import FeatureImportance, FeatureRow, ModelMetrics
from gap_spark.present.plots_base import (
    BASE_FONT,
    SET_COLOURS,
    SET_LABELS,
    Drawn,
    class_name,
    new_figure,
    png_bytes,
    style_axes,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["confused_pairs_figure", "feature_shifts_figure", "per_class_figure", "reliability_figure"]


def _importance_bars(ax: Any, importances: Sequence[FeatureImportance], max_bars: int) -> None:
    """The domain classifier's most important features as horizontal bars."""
    rows = sorted(importances, key=lambda r: -(r.importance or 0.0))[:max_bars][::-1]
    ax.barh(np.arange(len(rows)), [r.importance or 0.0 for r in rows], color="#6a51a3")
    ax.set_yticks(np.arange(len(rows)), [f"feature {r.feature}" for r in rows], fontsize=BASE_FONT - 1)
    ax.set_xlabel("importance in the val-vs-v2 domain classifier", fontsize=BASE_FONT)
    ax.set_title("Features the domain classifier leans on", fontsize=BASE_FONT + 2)
    style_axes(ax)


def feature_shifts_figure(top: Sequence[FeatureRow], threshold: float | None,
                          control_smd: Mapping[str, float] | None, importances: Sequence[FeatureImportance] | None,
                          max_bars: int = 20) -> Drawn:
    """Bars of the most shifted features (standardised mean difference), with the domain classifier's
    most important features beside them when given.

    Parameters
    ----------
    top : sequence of FeatureRow
        The most shifted features between val and v2 (the shift output's ``features.val_v2.top``).
    threshold : float, optional
        The |SMD| threshold, drawn as dashed lines.
    control_smd : mapping, optional
        Feature (as str) to its SMD between train and val, drawn as grey marks when known.
    importances : sequence of FeatureImportance, optional
        The val-vs-v2 domain classifier's most important features.
    max_bars : int
        The most bars per panel.

    Returns
    -------
    Drawn
    """
    fig = new_figure("bars")
    panels = 2 if importances else 1
    axes = fig.subplots(1, panels, squeeze=False)[0]
    rows = sorted(top, key=lambda r: -abs(r.smd or 0.0))[:max_bars][::-1]
    names = [f"feature {r.feature}" for r in rows]
    smd = np.array([r.smd or 0.0 for r in rows])
    ax = axes[0]
    positions = np.arange(len(rows))
    ax.barh(positions, smd, color=np.where(smd >= 0, SET_COLOURS["v2"], SET_COLOURS["val"]), alpha=0.85,
            label="val → v2")
    if control_smd:
        known = [(i, control_smd[str(r.feature)]) for i, r in enumerate(rows) if str(r.feature) in control_smd]
        if known:
            ax.scatter([v for _, v in known], [i for i, _ in known], marker="D", color="#444444", s=26, zorder=3,
                       label="train → val (control)")
    if threshold:
        for x in (-threshold, threshold):
            ax.axvline(x, color="#555555", linestyle="--", linewidth=1)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(positions, names, fontsize=BASE_FONT - 1)
    ax.set_xlabel("standardised mean difference (v2 − val, in pooled SDs)", fontsize=BASE_FONT)
    ax.set_title("Most shifted features", fontsize=BASE_FONT + 2)
    ax.legend(loc="lower right", fontsize=BASE_FONT - 1)
    style_axes(ax)
    if importances:
        _importance_bars(axes[1], importances, max_bars)
    fig.suptitle("Feature-level shift between val and v2", fontsize=BASE_FONT + 4)
    caption = ("Left: the features whose mean moves most from val to v2, in pooled standard deviations"
               + (f" (dashed lines: the ±{threshold:g} threshold)" if threshold else "")
               + (", with the same feature's train-to-val difference as a grey diamond when known"
                  if control_smd else "")
               + "." + (" Right: the features the domain classifier relies on most to tell the sets apart."
                        if importances else ""))
    return Drawn(png_bytes(fig), "Top feature shifts", caption)


def per_class_figure(table: "pd.DataFrame", model: str, annotate: int = 6,
                       class_names: Mapping[int, str] | None = None) -> Drawn:
    """Scatter of per-class accuracy on val (x) against v2 (y), with the diagonal.

    Classes with the same pair of accuracies (common: v2 has ten images a class, so its accuracies
    come in steps of 0.1) are drawn as one bubble whose area grows with their number.

    Parameters
    ----------
    table : pandas.DataFrame
        The per-class table of the model: ``label, val_n, val_accuracy, v2_n, v2_accuracy, drop``.
    model : str
        The model's name, for the title.
    annotate : int
        How many of the largest drops to label.
    class_names : mapping, optional
        Display names for labels.

    Returns
    -------
    Drawn
    """
    fig = new_figure("scatter")
    ax = fig.subplots()
    data = table.dropna(subset=["val_accuracy", "v2_accuracy"])
    x = data["val_accuracy"].to_numpy(float)
    y = data["v2_accuracy"].to_numpy(float)
    points, counts = np.unique(np.round(np.column_stack([x, y]), 6), axis=0, return_counts=True)
    below = points[:, 1] < points[:, 0]
    area = 14.0 + 26.0 * (counts - 1) ** 0.8
    low = max(0.0, min(float(x.min(initial=1.0)), float(y.min(initial=1.0))) - 0.05)
    ax.plot([low, 1.02], [low, 1.02], color="black", linestyle="--", linewidth=1, label="no change")
    n_below = int(np.sum(y < x))
    ax.scatter(points[below, 0], points[below, 1], s=area[below], alpha=0.6, color=SET_COLOURS["v2"], linewidths=0,
               label=f"worse on v2 ({n_below} classes)")
    ax.scatter(points[~below, 0], points[~below, 1], s=area[~below], alpha=0.6, color=SET_COLOURS["val"],
               linewidths=0, label=f"same or better ({len(x) - n_below} classes)")
    # Ring the largest drops and list them in a box: labels next to the points collide when classes crowd.
    worst = data.assign(_drop=x - y).nlargest(annotate, "_drop")
    if not worst.empty:
        ax.scatter(worst["val_accuracy"], worst["v2_accuracy"], s=90, facecolors="none", edgecolors="black",
                   linewidths=1.2, zorder=4, label=f"{len(worst)} largest drops")
        lines = [f"{class_name(int(r['label']), class_names)}: {r['val_accuracy'] * 100:.0f}% → "
                 f"{r['v2_accuracy'] * 100:.0f}%" for _, r in worst.iterrows()]
        # Upper left, under the legend: above the diagonal, where few classes sit (they would have improved).
        ax.text(0.02, 0.80, "Largest drops\n" + "\n".join(lines), transform=ax.transAxes, ha="left", va="top",
                fontsize=BASE_FONT - 1, family="monospace",
                bbox={"boxstyle": "round,pad=0.4", "fc": "white", "ec": "#bbbbbb"})
    ax.set_xlim(low, 1.02)
    ax.set_ylim(low, 1.02)
    ax.set_aspect("equal")
    ax.set_xlabel("accuracy on ImageNet val", fontsize=BASE_FONT)
    ax.set_ylabel("accuracy on ImageNetV2", fontsize=BASE_FONT)
    mean_drop = float(np.mean(x - y)) if len(x) else float("nan")
    ax.set_title(f"Per-class accuracy, val against v2 (model {model})", fontsize=BASE_FONT + 2)
    ax.legend(loc="upper left", fontsize=BASE_FONT - 1, markerscale=1.0)
    style_axes(ax)
    caption = (f"One point per class ({len(x)} classes) for model {model}; classes with identical accuracies "
               "share a bubble whose area grows with their number. Points below the diagonal lost accuracy on v2; "
               f"the mean per-class drop is {mean_drop * 100:.1f} points. The largest drops are ringed and listed.")
    return Drawn(png_bytes(fig), f"Per-class accuracy, val vs v2 ({model})", caption)


def reliability_figure(models: Mapping[str, ModelMetrics]) -> Drawn:
    """Reliability diagrams (accuracy against confidence per bin) for val and v2, one column per model,
    with the share of images in each bin underneath.

    Parameters
    ----------
    models : mapping of str to ModelMetrics
        Per model, its val and v2 metrics with their reliability bins and ECE.

    Returns
    -------
    Drawn
    """
    fig = new_figure("reliability")
    names = list(models)
    grid = fig.add_gridspec(2, len(names), height_ratios=(3, 1))
    for col, name in enumerate(names):
        ax = fig.add_subplot(grid[0, col])
        hist = fig.add_subplot(grid[1, col], sharex=ax)
        ax.plot([0, 1], [0, 1], color="black", linestyle="--", linewidth=1, label="perfect calibration")
        width = None
        for offset, set_name in ((-0.25, "val"), (0.25, "v2")):
            metrics = models[name].val if set_name == "val" else models[name].v2
            total = sum(b.count for b in metrics.reliability) or 1.0
            # A bin with images has its accuracy, confidence and bounds; one without any is left out.
            bins = [b for b in metrics.reliability if b.count > 0 and None not in (
                b.accuracy, b.confidence, b.bin_lower, b.bin_upper)]
            if not bins:
                continue
            conf = np.array([b.confidence for b in bins], dtype=float)
            acc = np.array([b.accuracy for b in bins], dtype=float)
            share = np.array([b.count for b in bins], dtype=float) / total
            ece = metrics.ece
            label = SET_LABELS[set_name] + (f" (ECE {ece:.3f})" if ece is not None else "")
            dashed = set_name == "v2"  # dashed with triangles, so overlapping curves stay apart to the eye
            ax.plot(conf, acc, color=SET_COLOURS[set_name], linewidth=1.8, linestyle="--" if dashed else "-",
                    label=label)
            # Marker area follows the share of images, so near-empty bins do not look as solid as full ones.
            ax.scatter(conf, acc, s=12 + 400 * share, color=SET_COLOURS[set_name], marker="^" if dashed else "o",
                       zorder=3, linewidths=0)
            lower = np.array([b.bin_lower for b in bins], dtype=float)
            upper = np.array([b.bin_upper for b in bins], dtype=float)
            width = float(np.median(upper - lower))
            hist.bar((lower + upper) / 2 + offset * width, share * 100, width=width / 2, color=SET_COLOURS[set_name],
                     alpha=0.85)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_ylabel("accuracy in the bin", fontsize=BASE_FONT)
        ax.set_title(f"model {name}", fontsize=BASE_FONT + 2)
        ax.legend(loc="upper left", fontsize=BASE_FONT - 1)
        ax.tick_params(labelbottom=False)
        style_axes(ax)
        hist.set_xlabel("mean confidence in the bin", fontsize=BASE_FONT)
        hist.set_ylabel("% of images", fontsize=BASE_FONT)
        style_axes(hist)
    fig.suptitle("Reliability diagrams on val and v2", fontsize=BASE_FONT + 4)
    caption = ("Top: accuracy against mean confidence in each confidence bin (empty bins left out; marker area "
               "follows the share of images in the bin). Below the diagonal the model is over-confident; a v2 curve "
               "further below than val's means its confidence does not fall as much as its accuracy. Bottom: the "
               "share of each set's images per bin.")
    return Drawn(png_bytes(fig), "Reliability diagrams", caption)


def confused_pairs_figure(table: "pd.DataFrame", model: str, max_pairs: int = 15,
                          class_names: Mapping[int, str] | None = None) -> Drawn:
    """Grouped bars of the confusions that grow most from val to v2.

    Parameters
    ----------
    table : pandas.DataFrame
        The confused-pair table of the model: ``true_label, predicted_label, val_rate, v2_rate, growth``.
    model : str
        The model's name, for the title.
    max_pairs : int
        How many pairs to draw.
    class_names : mapping, optional
        Display names for labels.

    Returns
    -------
    Drawn
    """
    fig = new_figure("pairs")
    ax = fig.subplots()
    rows = table.sort_values("growth", ascending=False).head(max_pairs).iloc[::-1]
    names = [f"{class_name(int(t), class_names)} → {class_name(int(p), class_names)}"
             for t, p in zip(rows["true_label"], rows["predicted_label"])]
    positions = np.arange(len(rows))
    height = 0.4
    ax.barh(positions - height / 2, rows["val_rate"].to_numpy(float) * 100, height, color=SET_COLOURS["val"],
            label=SET_LABELS["val"])
    ax.barh(positions + height / 2, rows["v2_rate"].to_numpy(float) * 100, height, color=SET_COLOURS["v2"],
            label=SET_LABELS["v2"])
    ax.set_yticks(positions, names, fontsize=BASE_FONT - 1)
    ax.set_xlabel("% of the true class's images predicted as the other class", fontsize=BASE_FONT)
    ax.set_title(f"Confusions that grow most on v2 (model {model})", fontsize=BASE_FONT + 2)
    ax.legend(loc="lower right", fontsize=BASE_FONT - 1)
    style_axes(ax)
    caption = (f"The {len(rows)} (true class → predicted class) pairs of model {model} whose rate grows most "
               "from val to v2; the rate is the share of the true class's images given the wrong label.")
    return Drawn(png_bytes(fig), f"Top confused pairs ({model})", caption)

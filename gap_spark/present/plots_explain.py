"""Figures of the explain stage: the gap's waterfall and the mitigations before and after."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from gap_spark.contracts.explain_outputs import Estimate, ModelExplain
from gap_spark.present.plots_base import BASE_FONT, SET_COLOURS, Drawn, new_figure, png_bytes, style_axes

__all__ = ["MITIGATION_LABELS", "PART_LABELS", "mitigations_figure", "waterfall_figure"]

PART_LABELS = {"label_mix": "label mix", "covariate": "covariate shift", "residual": "residual"}
MITIGATION_LABELS = {"adabn": "AdaBN-style", "coral": "CORAL", "importance_weighted": "importance-weighted",
                     "class_balanced": "class-balanced"}
_DROP, _RISE, _GREY = "#d62728", "#2ca02c", "#9e9e9e"


def _err(e: Estimate, centre: float, scale: float = 1.0) -> list[list[float]]:
    """matplotlib's asymmetric error bar around ``centre`` from an interval (zero without one)."""
    if e.ci95 is None:
        return [[0.0], [0.0]]
    lo, hi = e.ci95[0] * scale, e.ci95[1] * scale
    return [[max(0.0, centre - lo)], [max(0.0, hi - centre)]]


def _waterfall_panel(ax: Any, title: str, m: ModelExplain) -> None:
    val, v2 = m.accuracy.get("val", Estimate()), m.accuracy.get("v2", Estimate())
    if val.value is None or v2.value is None:
        ax.text(0.5, 0.5, "no numbers", ha="center", transform=ax.transAxes)
        return
    level = val.value * 100
    shown = [level, *(x * 100 for x in (val.ci95 or ()) + (v2.ci95 or ()))]
    ax.bar(0, level, color=SET_COLOURS["val"], yerr=_err(val, level, 100), capsize=5)
    for i, key in enumerate(PART_LABELS, start=1):
        part = m.parts.get(key, Estimate())
        size = part.value or 0.0
        end = level - size
        ax.bar(i, -size, bottom=level, color=_DROP if size > 0 else _RISE, alpha=0.85)
        if part.ci95 is not None:  # the part's interval, drawn where the level lands
            ax.errorbar(i, end, yerr=[[max(0.0, part.ci95[1] - size)], [max(0.0, size - part.ci95[0])]],
                        color="black", capsize=5)
            shown += [level - part.ci95[0], level - part.ci95[1]]
        ax.text(i + 0.42, (level + end) / 2, f"{size:+.1f}", ha="left", va="center", fontsize=BASE_FONT)
        ax.plot([i - 1.4, i + 0.4], [level, level], color="#555555", linestyle=":", linewidth=1)
        level = end
        shown.append(level)
    ax.bar(4, v2.value * 100, color=SET_COLOURS["v2"], yerr=_err(v2, v2.value * 100, 100), capsize=5)
    for x, value in ((0, val.value * 100), (4, v2.value * 100)):
        ax.text(x + 0.42, value, f"{value:.1f}%", ha="left", va="bottom", fontsize=BASE_FONT)
    low, high = min(shown), max(shown)
    pad = max(1.0, (high - low) * 0.1)
    ax.set_ylim(max(0.0, low - pad), min(100.0, high + pad))
    ax.set_xticks(range(5), ["val accuracy", *PART_LABELS.values(), "v2 accuracy"], fontsize=BASE_FONT - 1)
    ax.set_ylabel("top-1 accuracy (%)", fontsize=BASE_FONT)
    ax.set_title(title, fontsize=BASE_FONT + 2)
    style_axes(ax)


def waterfall_figure(models: Mapping[str, ModelExplain], titles: Mapping[str, str] | None = None) -> Drawn:
    """From val's accuracy to v2's through the three parts of the gap, one panel per model.

    Parameters
    ----------
    models : mapping
        Model name to its explain output.
    titles : mapping, optional
        Model name to its title in the panel.

    Returns
    -------
    Drawn
    """
    fig = new_figure("bars")
    axes = fig.subplots(1, max(1, len(models)), squeeze=False)[0]
    for ax, (name, m) in zip(axes, models.items()):
        _waterfall_panel(ax, (titles or {}).get(name, name), m)
    caption = ("Each step is one part of the gap, labelled in percentage points (val minus v2: a positive part "
               "lowers the accuracy): the label mix (v2's other class frequencies), covariate shift (what reweighting "
               "val by the density ratio accounts for) and the residual (rows that look alike are harder in v2). "
               "Error bars: 95% bootstrap intervals (the rows of both sets resampled; the models and the density "
               "ratio fixed).")
    return Drawn(png_bytes(fig), "Where the gap comes from", caption)


def _mitigation_panel(ax: Any, title: str, m: ModelExplain) -> None:
    names = [k for k, v in m.mitigations.items() if v.gap_points.get("before", Estimate()).value is not None]
    x = np.arange(len(names))
    for offset, which, colour in ((-0.2, "before", _GREY), (0.2, "after", SET_COLOURS["val"])):
        heights = [m.mitigations[k].gap_points[which].value or 0.0 for k in names]
        ax.bar(x + offset, heights, width=0.4, color=colour, label=f"gap {which}")
    tops = [max(m.mitigations[k].gap_points[w].value or 0.0 for w in ("before", "after")) for k in names]
    for i, k in enumerate(names):
        change = m.mitigations[k].gap_points.get("change", Estimate())
        if change.value is not None:  # the paired change: its interval is what the bars' own would hide
            ci = f"\n[{change.ci95[0]:+.1f}, {change.ci95[1]:+.1f}]" if change.ci95 else ""
            ax.text(i, tops[i], f"{change.value:+.1f}{ci}", ha="center", va="bottom", fontsize=BASE_FONT - 1)
    ax.axhline(0, color="black", linewidth=0.8)
    low = min(0.0, *(m.mitigations[k].gap_points[w].value or 0.0 for k in names for w in ("before", "after")))
    ax.set_ylim(low * 1.2, max([*tops, 0.1]) * 1.3)
    ax.set_xticks(x, [MITIGATION_LABELS.get(k, k) for k in names], fontsize=BASE_FONT - 1)
    ax.set_ylabel("gap, val minus v2 (points)", fontsize=BASE_FONT)
    ax.set_title(title, fontsize=BASE_FONT + 2)
    ax.legend(fontsize=BASE_FONT - 1, frameon=False)
    style_axes(ax)


def mitigations_figure(models: Mapping[str, ModelExplain], titles: Mapping[str, str] | None = None) -> Drawn | None:
    """The gap before and after each mitigation (paired 95% intervals), one panel per model; None when no
    model has a measured mitigation."""
    shown = {n: m for n, m in models.items()
             if any(v.gap_points.get("before", Estimate()).value is not None for v in m.mitigations.values())}
    if not shown:
        return None
    fig = new_figure("bars")
    axes = fig.subplots(1, len(shown), squeeze=False)[0]
    for ax, (name, m) in zip(axes, shown.items()):
        _mitigation_panel(ax, (titles or {}).get(name, name), m)
    caption = ("The gap before (grey) and after (blue) each mitigation; the label gives the change of the gap in "
               "points with its paired 95% bootstrap interval (the same rows before and after). Re-alignments score "
               "the same saved model on re-aligned v2 features; refits compare the same refit without and with the "
               "weights.")
    return Drawn(png_bytes(fig), "Mitigations before and after", caption)

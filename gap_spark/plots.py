"""The figures of a run, drawn with matplotlib's Agg canvas and returned as PNG bytes.

Every function takes plain, already-small data (numpy arrays, dicts from the run's JSON files,
pandas tables) and returns a :class:`Drawn` record; nothing here reads or writes files, so the
stage decides where the bytes go (through :mod:`gap_spark.core.fs`). pyplot is never imported: each
figure gets its own ``Figure`` and ``FigureCanvasAgg``, so no global backend state is touched.

Figure sizes are fixed (``SIZES``, in inches at ``DPI``), so the pixel size of each PNG is known
in advance and tests can check it.
"""
from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

DPI = 100
# name -> (width, height) in inches; pixels are these times DPI.
SIZES: dict[str, tuple[float, float]] = {
    "embedding": (14.0, 6.5),
    "bars": (14.0, 7.0),
    "scatter": (9.0, 8.0),
    "reliability": (14.0, 6.5),
    "pairs": (11.0, 7.5),
}
SET_COLOURS = {"val": "#1f77b4", "v2": "#d62728"}
SET_LABELS = {"val": "ImageNet val", "v2": "ImageNetV2"}
METHOD_LABELS = {"umap": "UMAP", "tsne": "t-SNE"}
BASE_FONT = 11


@dataclass(frozen=True)
class Drawn:
    """A finished figure: PNG bytes, and the title and caption the report shows with it."""

    png: bytes
    title: str
    caption: str


def size_px(kind: str) -> tuple[int, int]:
    """The (width, height) in pixels of a figure of the given kind.

    Parameters
    ----------
    kind : str
        A key of :data:`SIZES`.

    Returns
    -------
    tuple of int
        Width and height in pixels.
    """
    width, height = SIZES[kind]
    return round(width * DPI), round(height * DPI)


def _new_figure(kind: str):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=SIZES[kind], dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    # No bbox_inches="tight": the pixel size must stay exactly SIZES[kind] * DPI.
    fig.savefig(buffer, format="png", dpi=DPI, facecolor="white", metadata={"Software": None})
    return buffer.getvalue()


def _style(ax) -> None:
    ax.tick_params(labelsize=BASE_FONT - 1)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _class_name(label: int | str, names: Mapping[int, str] | None) -> str:
    if names and label in names:
        return str(names[label])
    return f"class {label}"


def embedding_by_set(coords: Mapping[str, np.ndarray], sets: np.ndarray) -> Drawn:
    """Scatter of each embedding, one panel per method, coloured by set (val or v2).

    Parameters
    ----------
    coords : mapping of str to ndarray
        Method name (``"umap"``, ``"tsne"``) to an ``(n, 2)`` array of positions.
    sets : ndarray
        ``n`` strings, ``"val"`` or ``"v2"``, one per point.

    Returns
    -------
    Drawn
    """
    fig = _new_figure("embedding")
    methods = list(coords)
    axes = fig.subplots(1, len(methods), squeeze=False)[0]
    rng = np.random.default_rng(0)
    order = rng.permutation(len(sets))  # draw in random order so neither set hides the other
    counts = {s: int(np.sum(sets == s)) for s in ("val", "v2")}
    for ax, method in zip(axes, methods):
        xy = coords[method][order]
        colours = np.array([SET_COLOURS.get(s, "#7f7f7f") for s in sets[order]])
        # Bigger dots for smaller samples: about 4 px at 10k points, up to 16 px at a few hundred.
        size = float(np.clip(40000.0 / max(len(xy), 1), 4.0, 16.0))
        ax.scatter(xy[:, 0], xy[:, 1], c=colours, s=size, alpha=0.6, linewidths=0, rasterized=True)
        label = METHOD_LABELS.get(method, method)
        ax.set_title(label, fontsize=BASE_FONT + 2)
        ax.set_xlabel(f"{label} 1", fontsize=BASE_FONT)
        ax.set_ylabel(f"{label} 2", fontsize=BASE_FONT)
        _style(ax)
    handles = [_legend_dot(SET_COLOURS[s], f"{SET_LABELS[s]} ({counts[s]:,} points)") for s in ("val", "v2")]
    axes[-1].legend(handles=handles, loc="best", fontsize=BASE_FONT, framealpha=0.9)
    fig.suptitle("Embedding of the sample, coloured by set", fontsize=BASE_FONT + 4)
    caption = (f"PCA then {', '.join(METHOD_LABELS.get(m, m) for m in methods)} of a class-stratified sample "
               f"of {counts['val']:,} val and {counts['v2']:,} v2 feature vectors. Regions of one colour are "
               "parts of feature space one set occupies and the other does not.")
    return Drawn(_png(fig), "Embedding coloured by set", caption)


def _legend_dot(colour: str, label: str, marker: str = "o"):
    from matplotlib.lines import Line2D

    return Line2D([], [], marker=marker, linestyle="", markersize=8, markerfacecolor=colour,
                  markeredgecolor="black" if marker != "o" else colour, label=label)


def embedding_by_class(coords: Mapping[str, np.ndarray], sets: np.ndarray, labels: np.ndarray,
                       focus_mask: np.ndarray, classes: Sequence[int],
                       class_names: Mapping[int, str] | None = None, class_source: str = "") -> Drawn:
    """Each embedding with the chosen classes coloured and every other point in light grey.

    Parameters
    ----------
    coords : mapping of str to ndarray
        Method name to ``(n, 2)`` positions.
    sets : ndarray
        ``"val"`` or ``"v2"`` per point (v2 points are drawn as triangles).
    labels : ndarray
        Class label per point.
    focus_mask : ndarray of bool
        Points that belong to the per-class view.
    classes : sequence of int
        The classes to colour, in legend order.
    class_names : mapping, optional
        Display names for labels; ``"class <label>"`` when absent.
    class_source : str
        How the classes were chosen, for the caption.

    Returns
    -------
    Drawn
    """
    from matplotlib import colormaps

    fig = _new_figure("embedding")
    methods = list(coords)
    axes = fig.subplots(1, len(methods), squeeze=False)[0]
    palette = colormaps["tab20"].colors if len(classes) > 10 else colormaps["tab10"].colors
    colour_of = {c: palette[i % len(palette)] for i, c in enumerate(classes)}
    for ax, method in zip(axes, methods):
        xy = coords[method]
        ax.scatter(xy[~focus_mask, 0], xy[~focus_mask, 1], c="#d9d9d9", s=3, linewidths=0, rasterized=True)
        for cls in classes:
            for set_name, marker in (("val", "o"), ("v2", "^")):
                mask = focus_mask & (labels == cls) & (sets == set_name)
                if mask.any():
                    ax.scatter(xy[mask, 0], xy[mask, 1], color=colour_of[cls], marker=marker,
                               s=22 if set_name == "val" else 34, alpha=0.85,
                               edgecolors="black" if set_name == "v2" else "none", linewidths=0.5)
        label = METHOD_LABELS.get(method, method)
        ax.set_title(label, fontsize=BASE_FONT + 2)
        ax.set_xlabel(f"{label} 1", fontsize=BASE_FONT)
        ax.set_ylabel(f"{label} 2", fontsize=BASE_FONT)
        _style(ax)
    class_handles = [_legend_dot(colour_of[c], _class_name(c, class_names)) for c in classes]
    # "outside" legends get their own room in the constrained layout instead of being clipped.
    fig.legend(handles=class_handles, loc="outside right upper", fontsize=BASE_FONT - 1, title="class",
               title_fontsize=BASE_FONT, frameon=False)
    set_handles = [_legend_dot("#ffffff", "val", "o"), _legend_dot("#ffffff", "v2", "^")]
    set_handles[0].set_markeredgecolor("black")
    fig.legend(handles=set_handles, loc="outside right lower", fontsize=BASE_FONT - 1, title="set",
               title_fontsize=BASE_FONT, frameon=False)
    fig.suptitle(f"Embedding coloured by class ({len(classes)} classes)", fontsize=BASE_FONT + 4)
    caption = (f"The same embedding with {len(classes)} classes coloured ({class_source or 'chosen classes'}); "
               "circles are val images, triangles v2 images, grey points the rest of the sample. "
               "v2 triangles that sit away from their class's val circles are images that moved.")
    return Drawn(_png(fig), "Embedding coloured by class", caption)


def density_difference(xy: np.ndarray, sets: np.ndarray, bins: int = 80, smooth: float = 1.5) -> np.ndarray:
    """The smoothed density of v2 minus that of val on a square grid over ``xy``.

    Parameters
    ----------
    xy : ndarray
        ``(n, 2)`` positions.
    sets : ndarray
        ``"val"`` or ``"v2"`` per point.
    bins : int
        Grid cells per axis.
    smooth : float
        Gaussian smoothing, in grid cells.

    Returns
    -------
    ndarray
        ``(bins, bins)`` array indexed ``[x, y]``; each set's density sums to one before the difference,
        so unequal set sizes do not bias it.
    """
    from scipy.ndimage import gaussian_filter

    lo, hi = xy.min(axis=0), xy.max(axis=0)
    pad = (hi - lo) * 0.02 + 1e-9
    edges = [np.linspace(lo[i] - pad[i], hi[i] + pad[i], bins + 1) for i in range(2)]
    out = np.zeros((bins, bins))
    for set_name, sign in (("v2", 1.0), ("val", -1.0)):
        points = xy[sets == set_name]
        if len(points) == 0:
            continue
        hist, _, _ = np.histogram2d(points[:, 0], points[:, 1], bins=edges)
        out += sign * gaussian_filter(hist / len(points), smooth)
    return out


def embedding_density_difference(coords: Mapping[str, np.ndarray], sets: np.ndarray, bins: int = 80) -> Drawn:
    """Map of where v2 is denser than val (red) and where val is denser (blue), per embedding.

    Parameters
    ----------
    coords : mapping of str to ndarray
        Method name to ``(n, 2)`` positions.
    sets : ndarray
        ``"val"`` or ``"v2"`` per point.
    bins : int
        Grid cells per axis.

    Returns
    -------
    Drawn
    """
    fig = _new_figure("embedding")
    methods = list(coords)
    axes = fig.subplots(1, len(methods), squeeze=False)[0]
    for ax, method in zip(axes, methods):
        xy = coords[method]
        diff = density_difference(xy, sets, bins=bins)
        limit = float(np.quantile(np.abs(diff), 0.995)) or float(np.abs(diff).max()) or 1.0
        lo, hi = xy.min(axis=0), xy.max(axis=0)
        image = ax.imshow(diff.T * 100.0, origin="lower", cmap="RdBu_r", vmin=-limit * 100, vmax=limit * 100,
                          extent=(lo[0], hi[0], lo[1], hi[1]), aspect="auto", interpolation="bilinear")
        label = METHOD_LABELS.get(method, method)
        ax.set_title(label, fontsize=BASE_FONT + 2)
        ax.set_xlabel(f"{label} 1", fontsize=BASE_FONT)
        ax.set_ylabel(f"{label} 2", fontsize=BASE_FONT)
        _style(ax)
        bar = fig.colorbar(image, ax=ax, shrink=0.85)
        bar.set_label("v2 density − val density (% of points per cell)", fontsize=BASE_FONT - 1)
    fig.suptitle("Where v2 is denser than val (red) and sparser (blue)", fontsize=BASE_FONT + 4)
    caption = ("Each set's points binned on a grid over the embedding, smoothed, normalised to sum to one, "
               "and subtracted (v2 minus val). White means both sets are equally dense there; a map with "
               "strong red and blue patches means the sets occupy different regions.")
    return Drawn(_png(fig), "Density difference, v2 minus val", caption)


def feature_shifts(top: Sequence[Mapping], threshold: float | None, control_smd: Mapping[str, float] | None,
                   importances: Sequence[Mapping] | None, max_bars: int = 20) -> Drawn:
    """Bars of the most shifted features (standardised mean difference), with the domain classifier's
    most important features beside them when given.

    Parameters
    ----------
    top : sequence of mapping
        ``shift.json`` ``features.val_v2.top`` entries (``feature``, ``smd``, ``ks``, ...).
    threshold : float, optional
        The |SMD| threshold, drawn as dashed lines.
    control_smd : mapping, optional
        Feature (as str) to its SMD between train and val, drawn as grey marks when known.
    importances : sequence of mapping, optional
        ``domain_classifier.val_v2.top_features`` entries (``feature``, ``importance``).
    max_bars : int
        The most bars per panel.

    Returns
    -------
    Drawn
    """
    fig = _new_figure("bars")
    panels = 2 if importances else 1
    axes = fig.subplots(1, panels, squeeze=False)[0]
    rows = sorted(top, key=lambda r: -abs(float(r.get("smd") or 0.0)))[:max_bars][::-1]
    names = [f"feature {r['feature']}" for r in rows]
    smd = np.array([float(r.get("smd") or 0.0) for r in rows])
    ax = axes[0]
    positions = np.arange(len(rows))
    ax.barh(positions, smd, color=np.where(smd >= 0, SET_COLOURS["v2"], SET_COLOURS["val"]), alpha=0.85,
            label="val → v2")
    if control_smd:
        known = [(i, control_smd[str(r["feature"])]) for i, r in enumerate(rows) if str(r["feature"]) in control_smd]
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
    _style(ax)
    if importances:
        ax2 = axes[1]
        imp_rows = sorted(importances, key=lambda r: -float(r.get("importance") or 0.0))[:max_bars][::-1]
        ax2.barh(np.arange(len(imp_rows)), [float(r.get("importance") or 0.0) for r in imp_rows], color="#6a51a3")
        ax2.set_yticks(np.arange(len(imp_rows)), [f"feature {r['feature']}" for r in imp_rows],
                       fontsize=BASE_FONT - 1)
        ax2.set_xlabel("importance in the val-vs-v2 domain classifier", fontsize=BASE_FONT)
        ax2.set_title("Features the domain classifier leans on", fontsize=BASE_FONT + 2)
        _style(ax2)
    fig.suptitle("Feature-level shift between val and v2", fontsize=BASE_FONT + 4)
    caption = ("Left: the features whose mean moves most from val to v2, in pooled standard deviations"
               + (f" (dashed lines: the ±{threshold:g} threshold)" if threshold else "")
               + (", with the same feature's train-to-val difference as a grey diamond when known"
                  if control_smd else "")
               + "." + (" Right: the features the domain classifier relies on most to tell the sets apart."
                        if importances else ""))
    return Drawn(_png(fig), "Top feature shifts", caption)


def per_class_accuracy(table, model: str, annotate: int = 6,
                       class_names: Mapping[int, str] | None = None) -> Drawn:
    """Scatter of per-class accuracy on val (x) against v2 (y), with the diagonal.

    Classes with the same pair of accuracies (common: v2 has ten images a class, so its accuracies
    come in steps of 0.1) are drawn as one bubble whose area grows with their number.

    Parameters
    ----------
    table : pandas.DataFrame
        ``per_class/<model>.csv`` rows: ``label, val_n, val_accuracy, v2_n, v2_accuracy, drop``.
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
    fig = _new_figure("scatter")
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
        lines = [f"{_class_name(int(r['label']), class_names)}: {r['val_accuracy'] * 100:.0f}% → "
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
    _style(ax)
    caption = (f"One point per class ({len(x)} classes) for model {model}; classes with identical accuracies "
               "share a bubble whose area grows with their number. Points below the diagonal lost accuracy on v2; "
               f"the mean per-class drop is {mean_drop * 100:.1f} points. The largest drops are ringed and listed.")
    return Drawn(_png(fig), f"Per-class accuracy, val vs v2 ({model})", caption)


def reliability(models: Mapping[str, Mapping[str, Mapping]]) -> Drawn:
    """Reliability diagrams (accuracy against confidence per bin) for val and v2, one column per model,
    with the share of images in each bin underneath.

    Parameters
    ----------
    models : mapping
        ``metrics.json`` ``models``: name -> {"val": M, "v2": M, ...} where M has ``reliability`` bins
        (``bin_lower, bin_upper, count, accuracy, confidence``) and ``ece``.

    Returns
    -------
    Drawn
    """
    fig = _new_figure("reliability")
    names = list(models)
    grid = fig.add_gridspec(2, len(names), height_ratios=(3, 1))
    for col, name in enumerate(names):
        ax = fig.add_subplot(grid[0, col])
        hist = fig.add_subplot(grid[1, col], sharex=ax)
        ax.plot([0, 1], [0, 1], color="black", linestyle="--", linewidth=1, label="perfect calibration")
        width = None
        for offset, set_name in ((-0.25, "val"), (0.25, "v2")):
            metrics = models[name].get(set_name) or {}
            all_bins = metrics.get("reliability") or []
            total = sum(float(b.get("count") or 0) for b in all_bins) or 1.0
            bins = [b for b in all_bins if (b.get("count") or 0) > 0]
            if not bins:
                continue
            conf = np.array([float(b["confidence"]) for b in bins])
            acc = np.array([float(b["accuracy"]) for b in bins])
            share = np.array([float(b["count"]) for b in bins]) / total
            ece = metrics.get("ece")
            label = SET_LABELS[set_name] + (f" (ECE {float(ece):.3f})" if ece is not None else "")
            dashed = set_name == "v2"  # dashed with triangles, so overlapping curves stay apart to the eye
            ax.plot(conf, acc, color=SET_COLOURS[set_name], linewidth=1.8, linestyle="--" if dashed else "-",
                    label=label)
            # Marker area follows the share of images, so near-empty bins do not look as solid as full ones.
            ax.scatter(conf, acc, s=12 + 400 * share, color=SET_COLOURS[set_name], marker="^" if dashed else "o",
                       zorder=3, linewidths=0)
            lower = np.array([float(b["bin_lower"]) for b in bins])
            upper = np.array([float(b["bin_upper"]) for b in bins])
            width = float(np.median(upper - lower))
            hist.bar((lower + upper) / 2 + offset * width, share * 100, width=width / 2, color=SET_COLOURS[set_name],
                     alpha=0.85)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_ylabel("accuracy in the bin", fontsize=BASE_FONT)
        ax.set_title(f"model {name}", fontsize=BASE_FONT + 2)
        ax.legend(loc="upper left", fontsize=BASE_FONT - 1)
        ax.tick_params(labelbottom=False)
        _style(ax)
        hist.set_xlabel("mean confidence in the bin", fontsize=BASE_FONT)
        hist.set_ylabel("% of images", fontsize=BASE_FONT)
        _style(hist)
    fig.suptitle("Reliability diagrams on val and v2", fontsize=BASE_FONT + 4)
    caption = ("Top: accuracy against mean confidence in each confidence bin (empty bins left out; marker area "
               "follows the share of images in the bin). Below the diagonal the model is over-confident; a v2 curve "
               "further below than val's means its confidence does not fall as much as its accuracy. Bottom: the "
               "share of each set's images per bin.")
    return Drawn(_png(fig), "Reliability diagrams", caption)


def confused_pairs(table, model: str, max_pairs: int = 15, class_names: Mapping[int, str] | None = None) -> Drawn:
    """Grouped bars of the confusions that grow most from val to v2.

    Parameters
    ----------
    table : pandas.DataFrame
        ``confused_pairs/<model>.csv`` rows: ``true_label, predicted_label, val_rate, v2_rate, growth``.
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
    fig = _new_figure("pairs")
    ax = fig.subplots()
    rows = table.sort_values("growth", ascending=False).head(max_pairs).iloc[::-1]
    names = [f"{_class_name(int(t), class_names)} → {_class_name(int(p), class_names)}"
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
    _style(ax)
    caption = (f"The {len(rows)} (true class → predicted class) pairs of model {model} whose rate grows most "
               "from val to v2; the rate is the share of the true class's images given the wrong label.")
    return Drawn(_png(fig), f"Top confused pairs ({model})", caption)

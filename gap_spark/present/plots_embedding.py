"""Figures of the sample's 2-D embeddings: coloured by set, by class, and the density difference."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from gap_spark.present.plots_base import (
    BASE_FONT,
    METHOD_LABELS,
    SET_COLOURS,
    SET_LABELS,
    Drawn,
    class_name,
    legend_dot,
    new_figure,
    png_bytes,
    style_axes,
)

__all__ = ["density_difference", "density_difference_figure", "embedding_by_class_figure", "embedding_by_set_figure"]


def embedding_by_set_figure(coords: Mapping[str, np.ndarray], sets: np.ndarray) -> Drawn:
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
    fig = new_figure("embedding")
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
        style_axes(ax)
    handles = [legend_dot(SET_COLOURS[s], f"{SET_LABELS[s]} ({counts[s]:,} points)") for s in ("val", "v2")]
    axes[-1].legend(handles=handles, loc="best", fontsize=BASE_FONT, framealpha=0.9)
    fig.suptitle("Embedding of the sample, coloured by set", fontsize=BASE_FONT + 4)
    caption = (f"PCA then {', '.join(METHOD_LABELS.get(m, m) for m in methods)} of a class-stratified sample "
               f"of {counts['val']:,} val and {counts['v2']:,} v2 feature vectors. Regions of one colour are "
               "parts of feature space one set occupies and the other does not.")
    return Drawn(png_bytes(fig), "Embedding coloured by set", caption)


def embedding_by_class_figure(coords: Mapping[str, np.ndarray], sets: np.ndarray, labels: np.ndarray,
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

    fig = new_figure("embedding")
    methods = list(coords)
    axes = fig.subplots(1, len(methods), squeeze=False)[0]
    palette = colormaps["tab20"].colors if len(classes) > 10 else colormaps["tab10"].colors  # type: ignore[attr-defined]
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
        style_axes(ax)
    class_handles = [legend_dot(colour_of[c], class_name(c, class_names)) for c in classes]
    # "outside" legends get their own room in the constrained layout instead of being clipped.
    fig.legend(handles=class_handles, loc="outside right upper", fontsize=BASE_FONT - 1, title="class",
               title_fontsize=BASE_FONT, frameon=False)
    set_handles = [legend_dot("#ffffff", "val", "o"), legend_dot("#ffffff", "v2", "^")]
    set_handles[0].set_markeredgecolor("black")
    fig.legend(handles=set_handles, loc="outside right lower", fontsize=BASE_FONT - 1, title="set",
               title_fontsize=BASE_FONT, frameon=False)
    fig.suptitle(f"Embedding coloured by class ({len(classes)} classes)", fontsize=BASE_FONT + 4)
    caption = (f"The same embedding with {len(classes)} classes coloured ({class_source or 'chosen classes'}); "
               "circles are val images, triangles v2 images, grey points the rest of the sample. "
               "v2 triangles that sit away from their class's val circles are images that moved.")
    return Drawn(png_bytes(fig), "Embedding coloured by class", caption)


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


def density_difference_figure(coords: Mapping[str, np.ndarray], sets: np.ndarray, bins: int = 80) -> Drawn:
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
    fig = new_figure("embedding")
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
        style_axes(ax)
        bar = fig.colorbar(image, ax=ax, shrink=0.85)
        bar.set_label("v2 density − val density (% of points per cell)", fontsize=BASE_FONT - 1)
    fig.suptitle("Where v2 is denser than val (red) and sparser (blue)", fontsize=BASE_FONT + 4)
    caption = ("Each set's points binned on a grid over the embedding, smoothed, normalised to sum to one, "
               "and subtracted (v2 minus val). White means both sets are equally dense there; a map with "
               "strong red and blue patches means the sets occupy different regions.")
    return Drawn(png_bytes(fig), "Density difference, v2 minus val", caption)

"""What every figure of a run shares: matplotlib's Agg canvas, fixed sizes, colours, and PNG bytes out.

Every figure function takes plain, already-small data and returns a :class:`Drawn` record; nothing in
the plotting modules reads or writes files, so the stage decides where the bytes go. pyplot is never
imported: each figure gets its own ``Figure`` and ``FigureCanvasAgg``, so no global backend state is
touched.

Figure sizes are fixed (``SIZES``, in inches at ``DPI``), so the pixel size of each PNG is known in
advance and tests can check it.
"""
from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BASE_FONT", "DPI", "METHOD_LABELS", "SET_COLOURS", "SET_LABELS", "SIZES", "Drawn", "class_name", "legend_dot",
    "new_figure", "png_bytes", "size_px", "style_axes",
]

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


def new_figure(kind: str) -> Any:
    """A matplotlib Figure of the kind's size on its own Agg canvas, with constrained layout."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=SIZES[kind], dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig: Any) -> bytes:
    """The figure as PNG bytes, at exactly its SIZES pixel size, without a Software tag."""
    buffer = io.BytesIO()
    # No bbox_inches="tight": the pixel size must stay exactly SIZES[kind] * DPI.
    fig.savefig(buffer, format="png", dpi=DPI, facecolor="white", metadata={"Software": None})
    return buffer.getvalue()


def style_axes(ax: Any) -> None:
    """Smaller tick labels and no top or right spine."""
    ax.tick_params(labelsize=BASE_FONT - 1)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def class_name(label: int, names: Mapping[int, str] | None) -> str:
    """A class's display name, or ``class <label>``."""
    if names and label in names:
        return str(names[label])
    return f"class {label}"


def legend_dot(colour: str, label: str, marker: str = "o") -> Any:
    """A legend handle: one marker, no line."""
    from matplotlib.lines import Line2D

    return Line2D([], [], marker=marker, linestyle="", markersize=8, markerfacecolor=colour,
                  markeredgecolor="black" if marker != "o" else colour, label=label)

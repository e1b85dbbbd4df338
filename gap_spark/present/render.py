"""Rendering the report's blocks with Jinja2: a self-contained HTML page and its Markdown twin.

Both templates escape by construction. The HTML environment has autoescape on, so every value is
HTML-escaped wherever it lands (text or attribute). The Markdown environment passes every value
through :func:`md` (its ``finalize``); only what the ``raw`` filter marks, the percent-encoded figure
links, is written as it is.
"""
from __future__ import annotations

import base64
import functools
import re
from collections.abc import Sequence
from importlib import resources
from typing import Any

from jinja2 import Environment, FunctionLoader, StrictUndefined

from gap_spark.contracts.run_artifacts import PNG_SIGNATURE
from gap_spark.present.blocks import Block

__all__ = ["md", "png_size", "render_html", "render_markdown"]


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk.

    Parameters
    ----------
    png : bytes
        The file's bytes.

    Returns
    -------
    tuple of int
    """
    if not png.startswith(PNG_SIGNATURE) or png[12:16] != b"IHDR":
        raise ValueError("not a PNG file")
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def md(text: Any) -> str:
    """Escape a value for Markdown: no raw HTML, no emphasis, no links, no table breaks."""
    # "<" starts raw HTML and "&name;" an entity; a lone ">" or "&" is harmless and stays readable.
    text = re.sub(r"&(?=#?\w+;)", "&amp;", str(text)).replace("<", "&lt;")
    text = re.sub(r"([\\`*_|])", r"\\\1", text)
    text = re.sub(r"^(\s*)>", r"\1\\>", text)
    # A link needs "](" or "][" right after its text; breaking those pairs is enough.
    return text.replace("](", "]\\(").replace("][", "]\\[").replace("\n", " ")


class _MarkdownRaw(str):
    """Text the Markdown template writes unescaped (marked by the ``raw`` filter)."""


def _md_finalize(value: Any) -> str:
    return value if isinstance(value, _MarkdownRaw) else md(value)


def _template_source(name: str) -> str:
    # importlib.resources reads the templates from an installed package and from spark-submit's zip alike.
    return (resources.files("gap_spark.present") / "templates" / name).read_text(encoding="utf-8")


@functools.cache
def _environment(markdown: bool) -> Environment:
    common: dict[str, Any] = {"loader": FunctionLoader(_template_source), "undefined": StrictUndefined,
                              "trim_blocks": True, "lstrip_blocks": True, "keep_trailing_newline": True}
    if markdown:
        env = Environment(autoescape=False, finalize=_md_finalize, **common)  # Markdown: escaped by finalize
        env.filters["raw"] = _MarkdownRaw
    else:
        env = Environment(autoescape=True, **common)
        env.filters["base64"] = lambda data: base64.b64encode(data).decode("ascii")
        env.filters["png_size"] = png_size
    return env


def render_html(title: str, subtitle: Sequence[str], blocks: Sequence[Block], footer: str) -> str:
    """The page as one self-contained HTML string (inline CSS, images as data URIs, no scripts).

    Parameters
    ----------
    title : str
        Page title.
    subtitle : sequence of str
        Lines under the title.
    blocks : sequence of Block
        The document (:func:`gap_spark.present.document.build_document`).
    footer : str
        Footer text.

    Returns
    -------
    str
    """
    template = _environment(False).get_template("report.html.j2")
    return template.render(title=title, subtitle=list(subtitle), blocks=list(blocks), footer=footer)


def render_markdown(title: str, subtitle: Sequence[str], blocks: Sequence[Block], footer: str) -> str:
    """The Markdown twin of :func:`render_html`; figures are linked by their path from the report."""
    template = _environment(True).get_template("report.md.j2")
    return template.render(title=title, subtitle=list(subtitle), blocks=list(blocks), footer=footer)

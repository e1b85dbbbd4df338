"""The report as a list of blocks, built once and rendered to both HTML and Markdown.

Each block's ``kind`` names the template macro that renders it. Blocks hold plain text only: the
templates escape every value on output.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

__all__ = ["Block", "Bullets", "Cards", "FigureBlock", "Heading", "Note", "Paragraph", "Table", "TableGrid"]


@dataclass
class Heading:
    kind: ClassVar[str] = "heading"
    text: str
    anchor: str
    level: int = 2


@dataclass
class Paragraph:
    kind: ClassVar[str] = "paragraph"
    text: str


@dataclass
class Bullets:
    kind: ClassVar[str] = "bullets"
    items: list[str]


@dataclass
class Note:
    kind: ClassVar[str] = "note"
    title: str
    items: list[str]


@dataclass
class Cards:
    kind: ClassVar[str] = "cards"
    cards: list[tuple[str, str, str]]  # (label, value, detail)


@dataclass
class Table:
    kind: ClassVar[str] = "table"
    caption: str
    headers: list[str]
    rows: list[list[str]]
    numeric: list[bool]


@dataclass
class TableGrid:
    """Tables laid out side by side where the page is wide enough (one after another in Markdown)."""

    kind: ClassVar[str] = "table_grid"
    tables: list[Table]


@dataclass
class FigureBlock:
    """A figure: the PNG is embedded in the page; ``link`` is its path relative to the report (Markdown)."""

    kind: ClassVar[str] = "figure"
    number: int
    title: str
    caption: str
    file: str
    png: bytes
    link: str


Block = Heading | Paragraph | Bullets | Note | Cards | Table | TableGrid | FigureBlock

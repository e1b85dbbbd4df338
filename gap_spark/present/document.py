"""The report as a document: cards, notes, findings, figures and tables, in the order they are shown."""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from urllib.parse import quote

from gap_spark.contracts.run import RunDir
from gap_spark.contracts.run_artifacts import FigureEntry, RunArtifacts
from gap_spark.present.blocks import (
    Block,
    Bullets,
    Cards,
    FigureBlock,
    Heading,
    Note,
    Paragraph,
    Table,
    TableGrid,
)
from gap_spark.present.content import (
    SIGN_CONVENTION,
    classes_sentence,
    confidence_sentences,
    confusion_sentences,
    domain_sentences,
    feature_sentences,
    headline_sentences,
    label_sentences,
    per_class_sentences,
    selection_sentence,
    superclass_sentences,
)
from gap_spark.present.explain_content import explain_blocks
from gap_spark.present.format import count, fmt, interval, pct, points, run_class_labels
from gap_spark.present.tables import (
    accuracy_rows,
    calibration_rows,
    confidence_rows,
    confused_pairs_rows,
    domain_rows,
    feature_rows,
    label_rows,
    per_class_rows,
    per_superclass_rows,
)

__all__ = ["build_document", "dataset_line", "figure_blocks"]


def dataset_line(art: RunArtifacts) -> str | None:
    """One line on the dataset the run read (from the first output that records it)."""
    dataset = ((art.metrics.dataset if art.metrics else None) or (art.train_summary.dataset if art.train_summary
                                                                  else None)
               or (art.shift.dataset if art.shift else None))
    if dataset is None:
        return None
    parts = [f"{s} {count(rows)}" for s, rows in dataset.split_rows.items()]
    text = f"Dataset: D = {dataset.dim} features, K = {dataset.classes} classes"
    if parts:
        text += "; rows " + ", ".join(parts)
    if dataset.fingerprint:
        text += f"; fingerprint {dataset.fingerprint}"
    return text + "."


def figure_blocks(run_dir: RunDir, figures: Sequence[tuple[FigureEntry, bytes]]) -> list[FigureBlock]:
    """The figures, numbered from 1, each linked by its path relative to the run directory."""
    # The file names were checked to be plain names; percent-encode them for the link target.
    return [FigureBlock(i, entry.title, entry.caption, entry.file, png,
                        run_dir.relative(run_dir.figure(quote(entry.file))))
            for i, (entry, png) in enumerate(figures, start=1)]


def _cards(art: RunArtifacts) -> list[tuple[str, str, str]]:
    cards = []
    m = art.metrics.models.get(art.model) if art.metrics and art.model else None
    if m is not None:
        ci = interval(m.gap.ci95, 100, 1)
        cards += [(f"top-1 on val · {art.model}", pct(m.val.accuracy), "ImageNet val"),
                  (f"top-1 on v2 · {art.model}", pct(m.v2.accuracy), "ImageNetV2"),
                  ("accuracy gap", f"{points(m.gap.accuracy)} pts", f"95% CI {ci}" if ci else "val minus v2")]
    main_dc = art.shift.domain_classifier.get("val_v2") if art.shift else None
    if main_dc is not None:
        ci = interval(main_dc.ci95)
        cards.append(("domain classifier AUC", fmt(main_dc.auc), f"95% CI {ci}" if ci else "val vs v2"))
    return cards


def _headline(art: RunArtifacts) -> list[Block]:
    if art.metrics is None:
        name = art.run_dir.relative(art.run_dir.metrics)
        return [Paragraph(f"No evaluation in this run: {name} is missing (run `gap-spark evaluate`).")]
    blocks: list[Block] = [Bullets(headline_sentences(art.metrics))]
    if art.metrics.models:
        blocks += [accuracy_rows(art.metrics), calibration_rows(art.metrics)]
    return blocks


def _shift(art: RunArtifacts) -> list[Block]:
    findings: list[str] = []
    if art.shift is not None:
        findings += (domain_sentences(art.shift) + feature_sentences(art.shift) + label_sentences(art.shift)
                     + confidence_sentences(art.shift))
    if art.per_class is not None and art.model:
        findings += per_class_sentences(art.per_class, art.model)
    if art.per_superclass is not None and art.model:
        grouping = art.metrics.classes.superclass_note if art.metrics and art.metrics.classes else ""
        findings += superclass_sentences(art.per_superclass, art.model, grouping)
    if art.confused_pairs is not None:
        findings += confusion_sentences(art.confused_pairs)
    blocks: list[Block] = [Bullets(findings)] if findings else []
    if art.shift is None:
        name = art.run_dir.relative(art.run_dir.shift)
        blocks.append(Paragraph(f"No shift analysis in this run: {name} is missing (run `gap-spark shift`)."))
    else:
        blocks += [t for t in (domain_rows(art.shift), label_rows(art.shift), confidence_rows(art.shift))
                   if t is not None]
    return blocks


def _tables(art: RunArtifacts, top_rows: int) -> Block:
    tables: list[Table] = []
    if art.per_class is not None and art.model:
        tables.append(per_class_rows(art.per_class, art.model, top_rows))
    if art.per_superclass is not None and art.model and len(art.per_superclass) > 1:
        tables.append(per_superclass_rows(art.per_superclass, art.model, top_rows))
    if art.confused_pairs is not None and art.model:
        tables.append(confused_pairs_rows(art.confused_pairs, art.model, top_rows))
    if art.shift is not None:
        tables += [t for t in (feature_rows(art.shift, "val_v2", top_rows),
                               feature_rows(art.shift, "train_val", top_rows)) if t is not None]
    return (TableGrid(tables) if tables else
            Paragraph("No tables: the per-class, confused-pair and shift outputs are missing."))


def build_document(art: RunArtifacts, figures: Sequence[FigureBlock], problems: Sequence[str],
                   top_rows: int = 15) -> list[Block]:
    """The report as blocks.

    Parameters
    ----------
    art : RunArtifacts
        What the run holds.
    figures : sequence of FigureBlock
        The figures to show (:func:`figure_blocks`).
    problems : sequence of str
        Every note on a missing part, shown in one box near the top.
    top_rows : int
        Rows per table.

    Returns
    -------
    list
    """
    blocks: list[Block] = []
    cards = _cards(art)
    if cards:
        blocks.append(Cards(cards))
    if problems:
        blocks.append(Note("Parts of this run are missing, so parts of the report are left out:", list(problems)))
    blocks.append(Heading("Headline numbers", "headline"))
    blocks.append(Paragraph(SIGN_CONVENTION))
    blocks += _headline(art)
    selection = selection_sentence(art.train_summary)
    if selection:
        blocks.append(Paragraph(selection))
    blocks.append(Heading("What shifts between val and v2", "shift"))
    blocks += _shift(art)
    blocks.append(Heading("Where the gap comes from", "explain"))
    explained = figure_blocks(art.run_dir, art.explain_figures)
    blocks += explain_blocks(art.explain, explained, art.model, top_rows, art.run_dir.relative(art.run_dir.explain),
                             run_class_labels(art.per_class, art.confused_pairs))
    figures = [dataclasses.replace(f, number=f.number + len(explained)) for f in figures]
    blocks.append(Heading("Figures", "figures"))
    blocks += list(figures) or [Paragraph("No figures in this run (run `gap-spark visualize`).")]
    blocks.append(Heading("Tables", "tables"))
    note = classes_sentence(art.metrics.classes if art.metrics else None)
    if note:
        blocks.append(Paragraph(note))
    blocks.append(_tables(art, top_rows))
    return blocks

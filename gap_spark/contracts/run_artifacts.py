"""Reading a run's outputs for presentation (report, visualize): each part typed, each missing or
unreadable part a sentence in ``problems``, never an exception.

Every path comes from :class:`~gap_spark.contracts.run.RunDir`; the typed views are in
:mod:`gap_spark.contracts.run_outputs`.
"""
from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from gap_spark.contracts.run import RunDir
from gap_spark.contracts.run_outputs import Metrics, Shift, parse_metrics, parse_shift
from gap_spark.contracts.train_outputs import TrainSummary, parse_train_summary
from gap_spark.core import fs

if TYPE_CHECKING:
    import pandas as pd

    from gap_spark.contracts.explain_outputs import Explain

__all__ = [
    "CONFUSED_COLUMNS", "PER_CLASS_COLUMNS", "PER_SUPERCLASS_COLUMNS", "PNG_SIGNATURE", "FigureEntry",
    "RunArtifacts", "choose_model",
    "load_figures", "load_run_artifacts", "parse_figures_index", "read_optional_csv", "read_optional_json",
    "report_inputs", "write_figures_index",
]

PER_CLASS_COLUMNS = ("label", "val_n", "val_accuracy", "v2_n", "v2_accuracy", "drop")
CONFUSED_COLUMNS = ("true_label", "predicted_label", "val_count", "val_rate", "v2_count", "v2_rate", "growth")
# Both tables may also carry names and WordNet ids (per class: name, wnid; pairs: true_name, true_wnid,
# predicted_name, predicted_wnid); a run without them shows class indices.
PER_SUPERCLASS_COLUMNS = ("superclass", "name", "classes", "val_n", "val_accuracy", "v2_n", "v2_accuracy", "drop")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

T = TypeVar("T")


@dataclass(frozen=True)
class FigureEntry:
    """One figure of the index: its file name in the figures folder, title and caption."""

    file: str
    title: str
    caption: str

    def as_json(self) -> dict[str, str]:
        return {"file": self.file, "title": self.title, "caption": self.caption}


def parse_figures_index(data: list[Any], source: str, problems: list[str]) -> tuple[FigureEntry, ...]:
    """The figure index's entries; one without a file name is noted and left out.

    A missing title is the file name, a missing caption empty.
    """
    entries = []
    for entry in data:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("file"), str):
            problems.append(f"an entry of {source} has no file name")
            continue
        name = entry["file"]
        entries.append(FigureEntry(name, str(entry.get("title") or name), str(entry.get("caption") or "")))
    return tuple(entries)


@dataclass
class RunArtifacts:
    """What a run directory holds for presentation; ``None`` where a part is missing.

    ``problems`` holds one plain sentence per missing, unreadable or malformed part.
    """

    run_dir: RunDir
    metrics: Metrics | None = None
    shift: Shift | None = None
    train_summary: TrainSummary | None = None
    figures: tuple[FigureEntry, ...] | None = None
    model: str | None = None
    per_class: "pd.DataFrame | None" = None
    confused_pairs: "pd.DataFrame | None" = None
    per_superclass: "pd.DataFrame | None" = None
    explain: "Explain | None" = None
    explain_figures: list[tuple[FigureEntry, bytes]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def run(self) -> str:
        return self.run_dir.root

    def has_anything(self) -> bool:
        return any(x is not None for x in (self.metrics, self.shift, self.figures, self.per_class,
                                           self.confused_pairs, self.explain))


def read_optional_json(path: str, expect: type = dict) -> tuple[Any, str | None]:
    """A JSON file's content, or None and a sentence saying why not.

    Parameters
    ----------
    path : str
        Path or URI of the file.
    expect : type
        The type the top level must have (dict or list).

    Returns
    -------
    tuple
        ``(content or None, problem or None)``; a missing file gives ``(None, None)``.
    """
    if not fs.exists(path):
        return None, None
    try:
        data = fs.read_json(path)
    except (ValueError, OSError) as exc:
        return None, f"{path} could not be read ({exc.__class__.__name__}: {exc})"
    if not isinstance(data, expect):
        return None, f"{path} does not hold a JSON {expect.__name__}"
    return data, None


def read_optional_csv(path: str, required: Sequence[str]) -> tuple["pd.DataFrame | None", str | None]:
    """A small CSV table (a single file, or a directory of Spark ``part-*.csv`` files), or None and a reason.

    Parameters
    ----------
    path : str
        Path or URI of the CSV file or directory.
    required : sequence of str
        Columns the table must have.

    Returns
    -------
    tuple
        ``(DataFrame or None, problem or None)``; a missing file gives ``(None, None)``.
    """
    import pandas as pd

    if not fs.exists(path):
        return None, None
    try:
        if fs.is_dir(path):
            parts = [n for n in fs.list_dir(path) if n.startswith("part-") and n.endswith(".csv")]
            frames = [pd.read_csv(io.StringIO(fs.read_text(fs.join(path, n)))) for n in parts]
            table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        else:
            table = pd.read_csv(io.StringIO(fs.read_text(path)))
    except (ValueError, OSError) as exc:
        return None, f"{path} could not be read ({exc.__class__.__name__}: {exc})"
    missing = [c for c in required if c not in table.columns]
    if missing:
        return None, f"{path} lacks the columns {', '.join(missing)}"
    return table, None


def _per_class_models(run_dir: RunDir) -> list[str]:
    """Models with a per-class CSV, in listing order."""
    root = run_dir.per_class_root
    if not fs.exists(root):
        return []
    suffix = fs.basename(run_dir.per_class_csv(""))  # the file name of model "": the suffix alone
    return [n[: -len(suffix)] for n in fs.list_dir(root) if n.endswith(suffix) and len(n) > len(suffix)]


def choose_model(preferred: str | None, train_summary: TrainSummary | None, metrics: Metrics | None,
                 run_dir: RunDir, candidates: Iterable[str] = ("lr", "rf")) -> str | None:
    """The model whose per-class views are shown, chosen without looking at val or v2.

    Parameters
    ----------
    preferred : str, optional
        A model named in the config; used whenever given.
    train_summary : TrainSummary, optional
        Without a preference, its model with the best accuracy on the selection slice (ties: the earlier in
        train order); when it records no such accuracy, its first model in train order. Models that
        ``metrics`` does not hold are passed over when it holds any.
    metrics : Metrics, optional
        Only which models were evaluated; never their accuracies (val and v2 are test sets).
    run_dir : RunDir
        Searched for per-class CSVs when there is neither a train summary nor metrics.
    candidates : iterable of str
        Model names in train order (``train.models``), used when the run has no train summary.

    Returns
    -------
    str or None
    """
    if preferred:
        return str(preferred)
    evaluated = set(metrics.models) if metrics and metrics.models else None
    trained = [(name, m) for name, m in (train_summary.models.items() if train_summary else ())
               if evaluated is None or name in evaluated]
    scored = [(m.selection_accuracy, -i, name) for i, (name, m) in enumerate(trained)
              if m.selection_accuracy is not None]
    if scored:
        return max(scored)[2]
    if trained:
        return trained[0][0]
    for name in candidates:
        if (name in evaluated) if evaluated is not None else fs.exists(run_dir.per_class_csv(name)):
            return name
    if metrics and metrics.models:
        return next(iter(metrics.models))
    names = _per_class_models(run_dir)
    return names[0] if names else None


def _read_typed(run_dir: RunDir, path: str, parse: Callable[[Any, str, list[str]], T], problems: list[str],
                hint: str | None) -> T | None:
    """Read and parse one JSON object; a missing file is noted when ``hint`` (the command to run) is given."""
    name = run_dir.relative(path)
    data, problem = read_optional_json(path)
    if problem:
        problems.append(problem)
    elif data is None and hint:
        problems.append(f"{name} is missing (run `{hint}`)")
    return None if data is None else parse(data, name, problems)


def load_run_artifacts(run_dir: RunDir, preferred_model: str | None = None,
                       candidates: Iterable[str] = ("lr", "rf")) -> RunArtifacts:
    """Read every presentation input of a run, noting what is missing.

    Parameters
    ----------
    run_dir : RunDir
        The run directory.
    preferred_model : str, optional
        The model whose per-class and confused-pair tables to read; see :func:`choose_model`.
    candidates : iterable of str
        Model names in train order, used when the run has no train summary.

    Returns
    -------
    RunArtifacts
    """
    art = RunArtifacts(run_dir=run_dir)
    art.metrics = _read_typed(run_dir, run_dir.metrics, parse_metrics, art.problems, "gap-spark evaluate")
    art.shift = _read_typed(run_dir, run_dir.shift, parse_shift, art.problems, "gap-spark shift")
    art.train_summary = _read_typed(run_dir, run_dir.train_summary, parse_train_summary, art.problems, None)
    _load_explain(art)
    index_name = run_dir.relative(run_dir.figures_index)
    figures, problem = read_optional_json(run_dir.figures_index, expect=list)
    if problem:
        art.problems.append(problem)
    elif figures is None:
        art.problems.append(f"{index_name} is missing (run `gap-spark visualize`)")
    art.model = choose_model(preferred_model, art.train_summary, art.metrics, run_dir, candidates)
    if art.model:
        for attr, path, required in (("per_class", run_dir.per_class_csv(art.model), PER_CLASS_COLUMNS),
                                     ("confused_pairs", run_dir.confused_pairs_csv(art.model), CONFUSED_COLUMNS)):
            table, problem = read_optional_csv(path, required)
            setattr(art, attr, table)
            if problem:
                art.problems.append(problem)
            elif table is None:
                art.problems.append(f"{run_dir.relative(path)} is missing (run `gap-spark evaluate`)")
        # Runs evaluated before superclasses existed have none: no note.
        art.per_superclass, problem = read_optional_csv(run_dir.per_superclass_csv(art.model), PER_SUPERCLASS_COLUMNS)
        if problem:
            art.problems.append(problem)
    if figures is not None:
        art.figures = parse_figures_index(figures, index_name, art.problems)
    return art


def _load_explain(art: RunArtifacts) -> None:
    """The explain output and its figures (listed in the file itself, not in the figure index)."""
    from gap_spark.contracts.explain_outputs import parse_explain  # it imports this module

    art.explain = _read_typed(art.run_dir, art.run_dir.explain, parse_explain, art.problems, "gap-spark explain")
    if art.explain is not None:
        art.explain_figures, problems = load_figures(art.run_dir, art.explain.figures)
        art.problems += problems


def load_figures(run_dir: RunDir, entries: Iterable[FigureEntry]) -> tuple[list[tuple[FigureEntry, bytes]],
                                                                        list[str]]:
    """The indexed figures that are plain file names in the figures folder, exist and are PNGs.

    Returns
    -------
    tuple
        ``([(entry, png bytes)], problems)``: one sentence for each figure left out.
    """
    found: list[tuple[FigureEntry, bytes]] = []
    problems: list[str] = []
    folder = run_dir.relative(run_dir.figures)
    for entry in entries:
        name = entry.file
        if "/" in name or "\\" in name or name.startswith("."):
            problems.append(f"figure {name} is not a plain file name in {folder}/ and was left out")
            continue
        path = run_dir.figure(name)
        if not fs.exists(path):
            problems.append(f"figure {name} is listed but missing")
            continue
        png = fs.read_bytes(path)
        if not png.startswith(PNG_SIGNATURE):
            problems.append(f"figure {name} is not a PNG and was left out")
            continue
        found.append((entry, png))
    return found, problems


def write_figures_index(run_dir: RunDir, entries: Iterable[FigureEntry]) -> None:
    """Write the figure index (``[{"file", "title", "caption"}]``) beside the figures."""
    fs.write_json(run_dir.figures_index, [e.as_json() for e in entries])


def report_inputs(run_dir: RunDir, model: str | None) -> list[str]:
    """The run's files a report reads, relative to the run directory, for its footer."""
    paths = [run_dir.metrics, run_dir.shift, run_dir.explain, run_dir.train_summary, run_dir.figures_index]
    if model:
        paths += [run_dir.per_class_csv(model), run_dir.confused_pairs_csv(model)]
        if fs.exists(run_dir.per_superclass_csv(model)):
            paths.append(run_dir.per_superclass_csv(model))
    return [run_dir.relative(p) for p in paths]

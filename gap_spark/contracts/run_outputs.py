"""Typed views of a run's JSON outputs: what the report and visualize read from the metrics and shift
files (:class:`~gap_spark.contracts.run.RunDir` names them). train_summary.json is read in
:mod:`.train_outputs`, explain.json in :mod:`.explain_outputs`, the figure index in
:mod:`.run_artifacts`.

Each ``parse_*`` function takes the decoded JSON and returns frozen dataclasses. A number that is missing
or not a finite number becomes ``None`` (shown as ``n/a``); a part that should be a JSON object and is
something else is left out, with one sentence appended to ``problems``. Nothing here raises on bad
content, so a malformed file becomes a note in the report, never a crash.

The layouts are those the evaluate, shift and train stages write:

- metrics: ``models.<name>.{val, v2}`` (rows, accuracy, ..., ``reliability`` bins) and
  ``models.<name>.gap`` (val minus v2 with ``*ci95`` intervals), plus ``dataset``;
- shift: ``features.<pair>`` (threshold, counts, ``top`` rows), ``domain_classifier.<pair>``,
  ``labels.<pair>``, ``confidence.<model>``, plus ``dataset``.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ClassesInfo", "ConfidenceShift", "ConfidenceStats", "DatasetSummary", "DomainClassifier", "FeatureImportance",
    "FeatureRow", "FeatureShift", "GapMetrics", "Interval", "LabelShift", "Metrics", "ModelMetrics",
    "ReliabilityBin", "SetMetrics", "Shift", "is_number", "parse_metrics", "parse_shift",
]

Interval = tuple[float, float]
Scalar = int | float | str


# --------------------------------------------------------------------------------------------------
# Leaves
# --------------------------------------------------------------------------------------------------

def is_number(x: Any) -> bool:
    """True for a finite real number (not a bool): int, float, and numpy's scalars, which a table row of
    mixed columns (names beside counts) holds as ``numpy.int64``."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(float(x))


def _num(x: Any) -> float | None:
    return float(x) if is_number(x) else None


def _int(x: Any) -> int | None:
    return int(x) if is_number(x) else None


def _interval(x: Any) -> Interval | None:
    if isinstance(x, (list, tuple)) and len(x) == 2 and all(is_number(v) for v in x):
        return float(x[0]), float(x[1])
    return None


def _scalar(x: Any) -> Scalar | None:
    return x if isinstance(x, (int, float, str)) and not isinstance(x, bool) else None


def _obj(parent: Mapping[str, Any], key: str, where: str, problems: list[str]) -> Mapping[str, Any]:
    """``parent[key]`` when it is a JSON object; ``{}`` when absent or null, with a note when it is anything else."""
    value = parent.get(key)
    if isinstance(value, Mapping):
        return value
    if value is not None:
        problems.append(f"{where}: {key} is not a JSON object and was left out")
    return {}


def _objects(parent: Mapping[str, Any], key: str, where: str, problems: list[str]) -> dict[str, Mapping[str, Any]]:
    """The entries of ``parent[key]`` that are JSON objects, by name (others noted and left out)."""
    section = _obj(parent, key, where, problems)
    out = {}
    for name, value in section.items():
        if isinstance(value, Mapping):
            out[str(name)] = value
        elif value is not None:
            problems.append(f"{where}: {key}.{name} is not a JSON object and was left out")
    return out


def _rows(x: Any) -> list[Mapping[str, Any]]:
    return [r for r in x if isinstance(r, Mapping)] if isinstance(x, list) else []


# --------------------------------------------------------------------------------------------------
# Shared parts
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DatasetSummary:
    """The dataset a stage read (a copy of the manifest's summary)."""

    dim: int | None
    classes: int | None
    fingerprint: str | None
    split_rows: Mapping[str, int | None]


def _dataset(data: Mapping[str, Any]) -> DatasetSummary | None:
    block = data.get("dataset")
    if not isinstance(block, Mapping) or not block:
        return None
    splits = block.get("splits")
    rows = {str(s): _int(v.get("rows")) for s, v in splits.items() if isinstance(v, Mapping)} \
        if isinstance(splits, Mapping) else {}
    fingerprint = block.get("fingerprint")
    return DatasetSummary(_int(block.get("dim")), _int(block.get("classes")),
                          str(fingerprint) if fingerprint else None, rows)


# --------------------------------------------------------------------------------------------------
# Metrics (evaluate)
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ReliabilityBin:
    """One confidence bin of a reliability diagram (accuracy and confidence are None in an empty bin)."""

    bin_lower: float | None
    bin_upper: float | None
    count: float
    accuracy: float | None
    confidence: float | None


@dataclass(frozen=True)
class SetMetrics:
    """One model's metrics on one set (val or v2)."""

    rows: int | None = None
    accuracy: float | None = None
    top5_accuracy: float | None = None
    macro_f1: float | None = None
    weighted_f1: float | None = None
    log_loss: float | None = None
    ece: float | None = None
    mean_confidence: float | None = None
    confident_fraction: float | None = None
    confident_accuracy: float | None = None
    unconfident_accuracy: float | None = None
    reliability: tuple[ReliabilityBin, ...] = ()


@dataclass(frozen=True)
class GapMetrics:
    """val minus v2, with 95% bootstrap intervals."""

    accuracy: float | None = None
    ci95: Interval | None = None
    macro_f1: float | None = None
    macro_f1_ci95: Interval | None = None
    ece: float | None = None
    ece_ci95: Interval | None = None


@dataclass(frozen=True)
class ModelMetrics:
    val: SetMetrics
    v2: SetMetrics
    gap: GapMetrics


@dataclass(frozen=True)
class ClassesInfo:
    """How the classes are shown: ``source`` (imagenet, csv or indices), why, and how superclasses form
    (``superclass_note`` in a few words, ``superclass_detail`` what that grouping means)."""

    source: str
    note: str
    superclass_note: str
    superclass_detail: str = ""


@dataclass(frozen=True)
class Metrics:
    """The evaluate stage's output: per model, in the file's order."""

    models: Mapping[str, ModelMetrics]
    dataset: DatasetSummary | None
    classes: ClassesInfo | None = None


_SET_NUMBERS = ("accuracy", "top5_accuracy", "macro_f1", "weighted_f1", "log_loss", "ece", "mean_confidence",
                "confident_fraction", "confident_accuracy", "unconfident_accuracy")


def _set_metrics(m: Mapping[str, Any]) -> SetMetrics:
    bins = tuple(ReliabilityBin(_num(b.get("bin_lower")), _num(b.get("bin_upper")), _num(b.get("count")) or 0.0,
                                _num(b.get("accuracy")), _num(b.get("confidence")))
                 for b in _rows(m.get("reliability")))
    return SetMetrics(rows=_int(m.get("rows")), reliability=bins, **{k: _num(m.get(k)) for k in _SET_NUMBERS})


def _gap_metrics(g: Mapping[str, Any]) -> GapMetrics:
    return GapMetrics(_num(g.get("accuracy")), _interval(g.get("ci95")), _num(g.get("macro_f1")),
                      _interval(g.get("macro_f1_ci95")), _num(g.get("ece")), _interval(g.get("ece_ci95")))


def parse_metrics(data: Mapping[str, Any], source: str, problems: list[str]) -> Metrics:
    """The metrics file's content as :class:`Metrics`.

    Parameters
    ----------
    data : mapping
        The decoded JSON object.
    source : str
        The file's name, for notes.
    problems : list of str
        Receives one sentence per part left out.

    Returns
    -------
    Metrics
    """
    models = {}
    for name, m in _objects(data, "models", source, problems).items():
        where = f"{source} (model {name})"
        models[name] = ModelMetrics(_set_metrics(_obj(m, "val", where, problems)),
                                    _set_metrics(_obj(m, "v2", where, problems)),
                                    _gap_metrics(_obj(m, "gap", where, problems)))
    block = data.get("classes")
    classes = (ClassesInfo(*(str(block.get(k) or "") for k in ("source", "note", "superclass_note",
                                                                  "superclass_detail")))
               if isinstance(block, Mapping) else None)
    return Metrics(models, _dataset(data), classes)


# --------------------------------------------------------------------------------------------------
# Shift
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FeatureRow:
    """One feature's shift between the pair's sets a and b."""

    feature: Scalar | None
    mean_a: float | None
    mean_b: float | None
    std_a: float | None
    std_b: float | None
    smd: float | None
    ks: float | None
    wasserstein: float | None


@dataclass(frozen=True)
class FeatureShift:
    """Per-feature statistics of one pair of sets; ``top`` holds the most shifted features."""

    threshold: float | None
    n_features: int | None
    n_shifted: int | None
    top: tuple[FeatureRow, ...]


@dataclass(frozen=True)
class FeatureImportance:
    feature: Scalar | None
    importance: float | None


@dataclass(frozen=True)
class DomainClassifier:
    """A classifier telling a pair of sets apart: cross-validated ROC AUC, raw and on PCA features."""

    auc: float | None
    ci95: Interval | None
    auc_pca: float | None
    ci95_pca: Interval | None
    rows_per_set: int | None
    top_features: tuple[FeatureImportance, ...]


@dataclass(frozen=True)
class LabelShift:
    """Label distributions of a pair: total variation distance and chi-square homogeneity test."""

    rows_a: int | None
    rows_b: int | None
    classes_a: int | None
    classes_b: int | None
    tvd: float | None
    chi2: float | None
    dof: int | None
    p_value: float | None


@dataclass(frozen=True)
class ConfidenceStats:
    """The distribution of a model's top-prediction confidence on one set."""

    rows: int | None
    mean: float | None
    std: float | None
    q05: float | None
    q25: float | None
    median: float | None
    q75: float | None
    q95: float | None


@dataclass(frozen=True)
class ConfidenceShift:
    """A model's confidence on val and v2 (None where the file has no object) and their distances."""

    val: ConfidenceStats | None
    v2: ConfidenceStats | None
    ks: float | None
    wasserstein: float | None


@dataclass(frozen=True)
class Shift:
    """The shift stage's output.

    ``raw_labels`` and ``raw_confidence`` are those sections as written, for a key-value view when
    their layout is not the one parsed into ``labels`` and ``confidence``.
    """

    features: Mapping[str, FeatureShift]
    domain_classifier: Mapping[str, DomainClassifier]
    labels: Mapping[str, LabelShift]
    confidence: Mapping[str, ConfidenceShift]
    raw_labels: Mapping[str, Any]
    raw_confidence: Mapping[str, Any]
    dataset: DatasetSummary | None


def _feature_shift(b: Mapping[str, Any]) -> FeatureShift:
    top = tuple(FeatureRow(_scalar(t.get("feature")), *(_num(t.get(k)) for k in (
        "mean_a", "mean_b", "std_a", "std_b", "smd", "ks", "wasserstein"))) for t in _rows(b.get("top")))
    return FeatureShift(_num(b.get("threshold")), _int(b.get("n_features")), _int(b.get("n_shifted")), top)


def _domain_classifier(c: Mapping[str, Any]) -> DomainClassifier:
    top = tuple(FeatureImportance(_scalar(t.get("feature")), _num(t.get("importance")))
                for t in _rows(c.get("top_features")))
    return DomainClassifier(_num(c.get("auc")), _interval(c.get("ci95")), _num(c.get("auc_pca")),
                            _interval(c.get("ci95_pca")), _int(c.get("rows_per_set")), top)


def _label_shift(b: Mapping[str, Any]) -> LabelShift:
    return LabelShift(_int(b.get("rows_a")), _int(b.get("rows_b")), _int(b.get("classes_a")),
                      _int(b.get("classes_b")), _num(b.get("tvd")), _num(b.get("chi2")), _int(b.get("dof")),
                      _num(b.get("p_value")))


def _confidence_stats(x: Any) -> ConfidenceStats | None:
    if not isinstance(x, Mapping):
        return None
    return ConfidenceStats(_int(x.get("rows")), *(_num(x.get(k)) for k in (
        "mean", "std", "q05", "q25", "median", "q75", "q95")))


def parse_shift(data: Mapping[str, Any], source: str, problems: list[str]) -> Shift:
    """The shift file's content as :class:`Shift` (see :func:`parse_metrics` for the parameters).

    Label and confidence entries that are not objects are not noted: their section is then shown as
    key-value pairs.
    """
    raw_labels = _obj(data, "labels", source, problems)
    raw_confidence = _obj(data, "confidence", source, problems)
    return Shift(
        features={p: _feature_shift(b) for p, b in _objects(data, "features", source, problems).items()},
        domain_classifier={p: _domain_classifier(c)
                           for p, c in _objects(data, "domain_classifier", source, problems).items()},
        labels={str(p): _label_shift(b) for p, b in raw_labels.items() if isinstance(b, Mapping)},
        confidence={str(m): ConfidenceShift(_confidence_stats(c.get("val")), _confidence_stats(c.get("v2")),
                                            _num(c.get("ks")), _num(c.get("wasserstein")))
                    for m, c in raw_confidence.items() if isinstance(c, Mapping)},
        raw_labels=raw_labels, raw_confidence=raw_confidence, dataset=_dataset(data))

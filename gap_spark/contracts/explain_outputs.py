"""The typed view of ``explain.json`` (the explain stage's output), in the manner of
:mod:`gap_spark.contracts.run_outputs`: frozen dataclasses, a bad number becomes None, a part that is not
a JSON object is left out with a sentence in ``problems``, and nothing raises on bad content.

The layout (fractions for accuracies; percentage points, val minus v2, for the gap and its parts)::

    models.<name>.accuracy.{val, v2, label_reweighted, importance_weighted}   {value, ci95}
    models.<name>.parts.{gap, label_mix, covariate, residual}                  {value, ci95} in points
    models.<name>.features_only.{covariate, residual}  {value, ci95} in points, from the features' ratio
                                           alone (when the model's ratio is stacked with its scores);
                                           .importance_weighted {value, ci95} a fraction
    models.<name>.estimators.<estimator>   {estimate, ci95, truth, error, abs_error, error_ci95, covers_truth}
    models.<name>.per_class                {classes, explained, left, overshot, ..., rows}
    models.<name>.weights                  {inputs, auc, rows, ess, ess_fraction, top1_share, ...}
    models.<name>.mitigations.<name>       {val, v2, gap_points: {before, after, change}, verdicts, ...}
    figures, warnings, bootstrap, weights.features, dataset
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gap_spark.contracts.run_artifacts import FigureEntry, parse_figures_index
from gap_spark.contracts.run_outputs import (
    DatasetSummary,
    Interval,
    _dataset,
    _int,
    _interval,
    _num,
    _obj,
    _objects,
    _rows,
)

__all__ = ["ClassRow", "Estimate", "Estimator", "Explain", "Mitigation", "ModelExplain", "PerClass", "Weights",
           "parse_explain"]


@dataclass(frozen=True)
class Estimate:
    """A number with its 95% bootstrap interval."""

    value: float | None = None
    ci95: Interval | None = None


@dataclass(frozen=True)
class Estimator:
    """A label-free estimate of v2's accuracy against the truth (fractions)."""

    estimate: float | None
    ci95: Interval | None
    truth: float | None
    error: float | None
    abs_error: float | None
    error_ci95: Interval | None
    covers_truth: bool | None


@dataclass(frozen=True)
class ClassRow:
    label: int | None
    val_n: int | None
    v2_n: int | None
    val_accuracy: float | None
    v2_accuracy: float | None
    drop: float | None
    predicted_drop: float | None
    residual: float | None
    status: str


@dataclass(frozen=True)
class PerClass:
    """Which classes' drops the covariate reweighting predicts (explained), leaves (left) or exceeds."""

    classes: int | None
    explained: int | None
    left: int | None
    overshot: int | None
    drop_points: float | None
    predicted_points: float | None
    correlation: float | None
    rows: tuple[ClassRow, ...]


@dataclass(frozen=True)
class Weights:
    """The density ratio's diagnostics on val's rows."""

    inputs: str | None
    auc: float | None
    rows: int | None
    ess: float | None
    ess_fraction: float | None
    top1_share: float | None
    clip_threshold: float | None
    clipped_rows: int | None
    ess_warning: bool


@dataclass(frozen=True)
class Mitigation:
    """One mitigation: val and v2 accuracy (fractions) and the gap (points), before, after and the change."""

    val: Mapping[str, Estimate]
    v2: Mapping[str, Estimate]
    gap_points: Mapping[str, Estimate]
    v2_verdict: str | None
    gap_verdict: str | None
    note: str | None


@dataclass(frozen=True)
class ModelExplain:
    """One model's block; ``features_only`` (covariate and residual in points, importance_weighted as a
    fraction) is empty unless the model's density ratio also read its scores."""

    accuracy: Mapping[str, Estimate]
    parts: Mapping[str, Estimate]
    estimators: Mapping[str, Estimator]
    per_class: PerClass | None
    weights: Weights | None
    mitigations: Mapping[str, Mitigation]
    features_only: Mapping[str, Estimate] = field(default_factory=dict)


@dataclass(frozen=True)
class Explain:
    """The explain stage's output: per model, in the file's order."""

    models: Mapping[str, ModelExplain]
    figures: tuple[FigureEntry, ...]
    warnings: tuple[str, ...]
    bootstrap: Mapping[str, str]
    dataset: DatasetSummary | None


def _estimate(x: Any) -> Estimate:
    return Estimate(_num(x.get("value")), _interval(x.get("ci95"))) if isinstance(x, Mapping) else Estimate()


def _estimates(x: Any) -> dict[str, Estimate]:
    return {str(k): _estimate(v) for k, v in x.items() if isinstance(v, Mapping)} if isinstance(x, Mapping) else {}


def _bool(x: Any) -> bool | None:
    return x if isinstance(x, bool) else None


def _estimator(e: Mapping[str, Any]) -> Estimator:
    return Estimator(_num(e.get("estimate")), _interval(e.get("ci95")), _num(e.get("truth")), _num(e.get("error")),
                     _num(e.get("abs_error")), _interval(e.get("error_ci95")), _bool(e.get("covers_truth")))


def _per_class(p: Mapping[str, Any]) -> PerClass | None:
    if not p:
        return None
    rows = tuple(ClassRow(_int(r.get("label")), _int(r.get("val_n")), _int(r.get("v2_n")), _num(r.get("val_accuracy")),
                          _num(r.get("v2_accuracy")), _num(r.get("drop")), _num(r.get("predicted_drop")),
                          _num(r.get("residual")), str(r.get("status") or ""))
                 for r in _rows(p.get("rows")))
    return PerClass(_int(p.get("classes")), _int(p.get("explained")), _int(p.get("left")), _int(p.get("overshot")),
                    _num(p.get("drop_points")), _num(p.get("predicted_points")), _num(p.get("correlation")), rows)


def _weights(w: Mapping[str, Any]) -> Weights | None:
    if not w:
        return None
    inputs = w.get("inputs")
    return Weights(str(inputs) if inputs else None, _num(w.get("auc")), _int(w.get("rows")), _num(w.get("ess")),
                   _num(w.get("ess_fraction")), _num(w.get("top1_share")), _num(w.get("clip_threshold")),
                   _int(w.get("clipped_rows")), bool(w.get("ess_warning")))


def _text(x: Any) -> str | None:
    return str(x) if isinstance(x, str) and x else None


def _mitigation(m: Mapping[str, Any]) -> Mitigation:
    return Mitigation(_estimates(m.get("val")), _estimates(m.get("v2")), _estimates(m.get("gap_points")),
                      _text(m.get("v2_verdict")), _text(m.get("gap_verdict")), _text(m.get("note")))


def parse_explain(data: Mapping[str, Any], source: str, problems: list[str]) -> Explain:
    """The explain file's content as :class:`Explain`.

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
    Explain
    """
    models = {}
    for name, m in _objects(data, "models", source, problems).items():
        where = f"{source} (model {name})"
        models[name] = ModelExplain(
            accuracy=_estimates(m.get("accuracy")), parts=_estimates(m.get("parts")),
            estimators={k: _estimator(e) for k, e in _objects(m, "estimators", where, problems).items()},
            per_class=_per_class(_obj(m, "per_class", where, problems)),
            weights=_weights(_obj(m, "weights", where, problems)),
            mitigations={k: _mitigation(v) for k, v in _objects(m, "mitigations", where, problems).items()},
            features_only=_estimates(m.get("features_only")))
    figures = data.get("figures")
    warnings = data.get("warnings")
    bootstrap = _obj(data, "bootstrap", source, problems)
    return Explain(models=models,
                   figures=parse_figures_index(figures, source, problems) if isinstance(figures, list) else (),
                   warnings=tuple(str(w) for w in warnings) if isinstance(warnings, list) else (),
                   bootstrap={str(k): str(v) for k, v in bootstrap.items() if isinstance(v, (str, int, float))},
                   dataset=_dataset(data))

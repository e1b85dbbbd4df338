"""The tables of the report's "Where the gap comes from" section, from the typed explain.json."""
from __future__ import annotations

from collections.abc import Mapping

from gap_spark.contracts.explain_outputs import Estimate, Explain, ModelExplain
from gap_spark.present.blocks import Table
from gap_spark.present.format import class_label, count, fmt, interval, pct, points
from gap_spark.present.plots_explain import MITIGATION_LABELS

__all__ = ["ESTIMATOR_NAMES", "estimator_rows", "explain_class_name", "explain_class_rows", "mitigation_rows",
           "part_rows"]

ESTIMATOR_NAMES = {
    "ac": "average confidence (AC)",
    "doc": "difference of confidences (DoC)",
    "atc_confidence": "ATC, max-softmax",
    "atc_negentropy": "ATC, negative entropy",
    "importance_weighted": "importance-weighted val accuracy",
    "calibrated": "calibrated confidence (CBPE-style)",
}


def _points(e: Estimate) -> str:
    return f"{fmt(e.value, 1)} {interval(e.ci95, 1, 1)}".strip()


def _acc(e: Estimate) -> str:
    return f"{pct(e.value)} {interval(e.ci95, 100, 1)}".strip()


def part_rows(explain: Explain) -> Table:
    """Per model: the gap and its three parts (points, val minus v2) and the reweighted accuracies."""
    rows = []
    for name, m in explain.models.items():
        p, a = m.parts, m.accuracy
        rows.append([name, *(_points(p.get(k, Estimate())) for k in ("gap", "label_mix", "covariate", "residual")),
                     _acc(a.get("label_reweighted", Estimate())), _acc(a.get("importance_weighted", Estimate()))])
        alone = m.features_only
        if alone.get("covariate", Estimate()).value is not None:
            rows.append([f"{name}, features alone", "", "", _points(alone["covariate"]),
                         _points(alone.get("residual", Estimate())), "",
                         _acc(alone.get("importance_weighted", Estimate()))])
    return Table("The gap's parts in percentage points (val minus v2) with 95% bootstrap intervals; they add up to "
                 "the gap. Label-reweighted: val's per-class accuracies at v2's class frequencies; importance-"
                 "weighted: val's correctness reweighted by the density ratio (\"features alone\": a ratio that does "
                 "not read the model's scores).",
                 ["model", "gap [CI]", "label mix [CI]", "covariate [CI]", "residual [CI]",
                  "label-reweighted val acc. [CI]", "importance-weighted val acc. [CI]"], rows,
                 [False] + [True] * 6)


def estimator_rows(explain: Explain) -> Table:
    """Per model and estimator: the estimate of v2's accuracy without v2's labels against the truth."""
    rows = []
    for name, m in explain.models.items():
        for key, e in m.estimators.items():
            rows.append([name, ESTIMATOR_NAMES.get(key, key), f"{pct(e.estimate)} {interval(e.ci95, 100, 1)}".strip(),
                         pct(e.truth), f"{points(e.error)} {interval(e.error_ci95, 100, 1)}".strip(),
                         "yes" if e.covers_truth else ("no" if e.covers_truth is not None else "n/a")])
    return Table("v2 accuracy estimated without v2's labels (from val with labels and v2's features and "
                 "predictions), against the true v2 accuracy; error = estimate minus truth in points, with the "
                 "interval of the paired bootstrap differences.",
                 ["model", "estimator", "estimate [CI]", "true v2 acc.", "error [CI]", "CI holds truth"], rows,
                 [False, False, True, True, True, False])


def mitigation_rows(explain: Explain) -> Table | None:
    """Per model and mitigation: val, v2 and the gap before and after, with the paired change; None if none."""
    rows = []
    for name, m in explain.models.items():
        for key, x in m.mitigations.items():
            v2, gap, val = x.v2, x.gap_points, x.val
            if v2.get("before", Estimate()).value is None:
                rows.append([name, MITIGATION_LABELS.get(key, key), "", "", "", "", x.note or "not measured"])
                continue
            rows.append([name, MITIGATION_LABELS.get(key, key),
                         f"{pct(val['before'].value)} → {pct(val['after'].value)}",
                         f"{pct(v2['before'].value)} → {pct(v2['after'].value)}",
                         f"{points(v2['change'].value)} {interval(v2['change'].ci95, 100, 1)}".strip(),
                         f"{fmt(gap['before'].value, 1)} → {fmt(gap['after'].value, 1)} "
                         f"({_points(gap['change'])})", x.v2_verdict or ""])
    if not rows:
        return None
    return Table("Mitigations: accuracies before → after, the change in v2 accuracy (points, paired 95% interval) "
                 "and the gap before → after (change and interval); the verdict is on v2's accuracy.",
                 ["model", "mitigation", "val acc.", "v2 acc.", "v2 change [CI]", "gap (change [CI])", "verdict"],
                 rows, [False, False, True, True, True, True, False])


def explain_class_name(label: int | None, names: Mapping[int, str] | None = None) -> str:
    """A class as the rest of the report shows it: ``name (wnid)`` when the run names it, else ``class 3``."""
    name = (names or {}).get(label) if label is not None else None
    return name or class_label(label)


def explain_class_rows(m: ModelExplain, name: str, top_rows: int,
                       names: Mapping[int, str] | None = None) -> Table | None:
    """The classes the covariate reweighting leaves most unexplained, for one model (``names``: label ->
    ``name (wnid)``, :func:`~gap_spark.present.format.run_class_labels`)."""
    if m.per_class is None or not m.per_class.rows:
        return None
    rows = [[explain_class_name(r.label, names), count(r.val_n), count(r.v2_n), pct(r.val_accuracy),
             pct(r.v2_accuracy), points(r.drop), points(r.predicted_drop),
             points(r.residual), r.status] for r in m.per_class.rows[:top_rows]]
    return Table(f"Per class ({name}): the drop (val minus v2, points), the drop the covariate reweighting predicts, "
                 "and what it leaves; explained = within 1.96 binomial standard errors.",
                 ["class", "val n", "v2 n", "val acc.", "v2 acc.", "drop", "predicted", "left", "status"], rows,
                 [False] + [True] * 7 + [False])

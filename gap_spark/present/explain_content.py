"""The report's "Where the gap comes from" section: sentences written from explain.json's numbers, and its
blocks (figures and tables from :mod:`gap_spark.present.explain_rows`)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from gap_spark.contracts.explain_outputs import Estimate, Estimator, Explain, Mitigation, ModelExplain
from gap_spark.present.blocks import Block, Bullets, FigureBlock, Paragraph
from gap_spark.present.content import model_label
from gap_spark.present.explain_rows import (
    ESTIMATOR_NAMES,
    estimator_rows,
    explain_class_name,
    explain_class_rows,
    mitigation_rows,
    part_rows,
)
from gap_spark.present.format import count, fmt, interval, pct, points
from gap_spark.present.plots_explain import MITIGATION_LABELS

__all__ = ["ENGSTROM", "explain_blocks", "explain_sentences"]

ENGSTROM = ("For context, not as a result of this run: Engstrom et al. (2020, \"Identifying Statistical Bias in "
            "Dataset Replication\") found that of ImageNetV2's 11.7 ± 1.0-point drop, 3.6 ± 1.5 points remain "
            "unexplained once the replication's selection bias is corrected for, on the real images and with "
            "their own estimator.")


def _pts(e: Estimate) -> str:
    ci = interval(e.ci95, 1, 1)
    return f"{fmt(e.value, 1)} points" + (f" ({ci})" if ci else "")


def _parts_sentences(title: str, m: ModelExplain) -> list[str]:
    gap, label, cov, res = (m.parts.get(k, Estimate()) for k in ("gap", "label_mix", "covariate", "residual"))
    if gap.value is None:
        return []
    out = [f"Of the {_pts(gap)} gap of {title}, the label mix accounts for {_pts(label)}, covariate shift for "
           f"{_pts(cov)} and the residual for {_pts(res)}; the three add up to the gap."]
    alone = _features_only_sentence(m)
    if alone:
        out.append(alone)
    if gap.ci95 and gap.ci95[0] <= 0 <= gap.ci95[1]:
        out.append("The gap's own interval contains 0, so its parts are not told apart from noise.")
        return out
    share = {k: (e.value or 0.0) / gap.value for k, e in (("label mix", label), ("covariate shift", cov),
                                                          ("residual", res)) if gap.value}
    main = max(share, key=lambda k: share[k]) if share else None
    if main == "residual":
        out.append(f"Most of it ({pct(share[main], 0)}) is residual: v2's rows are harder than the val rows that "
                   "look like them, which no reweighting of val reproduces.")
    elif main == "covariate shift":
        out.append(f"Most of it ({pct(share[main], 0)}) is covariate shift: val's rows reweighted to look like "
                   "v2's reproduce it.")
    elif main:
        out.append(f"Most of it ({pct(share[main], 0)}) is the label mix: v2 holds more of the classes the "
                   "model finds hard.")
    return out


def _features_only_sentence(m: ModelExplain) -> str | None:
    """What the density ratio on the features alone makes of the covariate part, beside the stacked one."""
    cov, alone, res = m.parts.get("covariate", Estimate()), *(m.features_only.get(k, Estimate())
                                                               for k in ("covariate", "residual"))
    if alone.value is None:
        return None
    text = (f"With a density ratio on the features alone (without the model's scores), covariate shift "
            f"accounts for {_pts(alone)} and the residual for {_pts(res)}")
    if cov.value is not None:
        text += f"; adding the model's scores moves the covariate part by {fmt(cov.value - alone.value, 1)} points"
    return text + "."


def _weight_sentence(m: ModelExplain) -> str | None:
    w = m.weights
    if w is None or w.ess is None:
        return None
    inputs = "the features and the model's scores" if w.inputs == "features+scores" else "the features"
    text = (f"The density ratio (a cross-fitted classifier on {inputs}, out-of-fold AUC {fmt(w.auc)}) keeps an "
            f"effective sample size of {count(round(w.ess))} of {count(w.rows)} val rows ({pct(w.ess_fraction)}); "
            f"the top 1% of rows hold {pct(w.top1_share)} of the weight.")
    if w.ess_warning:
        text += " That is under 10%: the importance-weighted numbers rest on few rows."
    return text


def _estimator_sentences(m: ModelExplain) -> list[str]:
    scored = [(k, e) for k, e in m.estimators.items() if e.abs_error is not None]
    if not scored:
        return []
    best = min(scored, key=lambda kv: kv[1].abs_error or 0.0)
    worst = max(scored, key=lambda kv: kv[1].abs_error or 0.0)
    truth = best[1].truth
    covered = sum(1 for _, e in scored if e.covers_truth)

    def says(kv: tuple[str, Estimator]) -> str:
        name, e = kv
        return f"{ESTIMATOR_NAMES.get(name, name)}, {pct(e.estimate)} (error {points(e.error)} points)"

    return [f"Without v2's labels, the closest estimate of v2's accuracy ({pct(truth)}) is {says(best)}; the "
            f"farthest is {says(worst)}. {covered} of {len(scored)} estimates' 95% intervals hold the true "
            "accuracy."]


def _class_sentence(m: ModelExplain, names: Mapping[int, str] | None = None) -> str | None:
    p = m.per_class
    if p is None or not p.classes:
        return None
    text = (f"Per class, the covariate reweighting predicts the drop of {count(p.explained)} of {count(p.classes)} "
            f"classes within noise; {count(p.left)} fall further than it predicts and {count(p.overshot)} less")
    left = [r for r in p.rows if r.status == "left"]
    if left:
        r = left[0]
        text += (f" (the largest shortfall: {explain_class_name(r.label, names)}, {pct(r.val_accuracy)} on val to "
                 f"{pct(r.v2_accuracy)} on v2, of which the reweighting predicts {points(r.predicted_drop)} points)")
    return text + "."


def _mitigation_sentence(kind: str, x: Mitigation) -> str:
    name = MITIGATION_LABELS.get(kind, kind)
    change, gap = x.v2.get("change", Estimate()), x.gap_points.get("change", Estimate())
    if change.value is None:
        return f"{name}: {x.note or 'not measured'}."
    effect = (f"v2 accuracy changes by {points(change.value)} points {interval(change.ci95, 100, 1)} and the gap "
              f"by {fmt(gap.value, 1)} {interval(gap.ci95, 1, 1)}")
    verdict = {"better": "it helps", "worse": "it hurts v2 accuracy",
               "no measurable change": "it does not help measurably"}.get(x.v2_verdict or "", "its effect is unclear")
    return f"{name}: {effect}; {verdict}."


def explain_sentences(explain: Explain, model: str | None = None, names: Mapping[int, str] | None = None) -> list[str]:
    """The section's findings: per model the parts, then for ``model`` (default: the first) the weights,
    the estimators, the classes (by ``names``, label -> ``name (wnid)``, where known) and the mitigations;
    the anchor as context; how intervals were made."""
    out: list[str] = []
    for name, m in explain.models.items():
        out += _parts_sentences(model_label(name), m)
    chosen = model if model in explain.models else next(iter(explain.models), None)
    if chosen is not None:
        m = explain.models[chosen]
        out += [s for s in (_weight_sentence(m), *_estimator_sentences(m), _class_sentence(m, names)) if s]
        out += [_mitigation_sentence(k, x) for k, x in m.mitigations.items()]
    out.append(ENGSTROM)
    if explain.bootstrap:
        out.append(f"Intervals: {explain.bootstrap.get('replicates', 'the')} Poisson bootstrap replicates resample "
                   f"{explain.bootstrap.get('resampled', 'the rows of both sets')}; "
                   f"{explain.bootstrap.get('fixed', 'the models')} stay fixed (nothing is refitted inside the "
                   "bootstrap), so the intervals leave out the density ratio's own estimation noise.")
    return out


def explain_blocks(explain: Explain | None, figures: Sequence[FigureBlock], model: str | None, top_rows: int,
                   file_name: str, names: Mapping[int, str] | None = None) -> list[Block]:
    """The section's blocks: findings, the figures, and the parts, estimators, mitigations and class tables.

    Parameters
    ----------
    explain : Explain or None
        The typed explain.json (None: the run has none).
    figures : sequence of FigureBlock
        Its figures, numbered.
    model : str or None
        The model whose per-class table is shown.
    top_rows : int
        Rows of the per-class table.
    file_name : str
        explain.json's name in the run, for the sentence shown when it is missing.
    names : mapping, optional
        Label -> ``name (wnid)`` (:func:`~gap_spark.present.format.run_class_labels`): classes are shown
        as in the report's other tables; without it, by index.
    """
    if explain is None or not explain.models:
        return [Paragraph(f"No explanation in this run: {file_name} is missing (run `gap-spark explain`).")]
    blocks: list[Block] = [Bullets(explain_sentences(explain, model, names))]
    if explain.warnings:
        blocks.append(Paragraph("Warning: " + " ".join(explain.warnings)))
    blocks += list(figures)
    blocks += [part_rows(explain), estimator_rows(explain)]
    table = mitigation_rows(explain)
    if table is not None:
        blocks.append(table)
    chosen = model if model is not None and model in explain.models else next(iter(explain.models))
    classes = explain_class_rows(explain.models[chosen], chosen, top_rows, names)
    if classes is not None:
        blocks.append(classes)
    return blocks

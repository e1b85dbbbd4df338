"""The report's sentences: each finding written in plain words from the run's typed outputs."""
from __future__ import annotations

from typing import TYPE_CHECKING

from gap_spark.contracts.run_outputs import ClassesInfo, ConfidenceShift, Metrics, Shift
from gap_spark.contracts.train_outputs import TrainSummary
from gap_spark.models import model_title
from gap_spark.present.format import class_label, count, fmt, interval, pct, points

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "PAIR_NAMES", "SIGN_CONVENTION", "classes_sentence", "confidence_sentences", "confusion_sentences",
    "domain_sentences", "feature_sentences", "headline_sentences", "label_sentences", "model_label",
    "per_class_sentences", "selection_sentence", "superclass_sentences",
]

PAIR_NAMES = {"val_v2": ("val", "v2"), "train_val": ("train", "val")}

SIGN_CONVENTION = ("Sign convention: every gap in this report, its tables and its JSON files is val minus v2. "
                   "A positive accuracy gap means lower accuracy on v2; a negative ECE gap means worse "
                   "calibration on v2.")


def model_label(name: str) -> str:
    """A model in prose: ``logistic regression (lr)``; an unregistered name as it is."""
    title = model_title(name)
    return f"{title} ({name})" if title != name else name


def headline_sentences(metrics: Metrics) -> list[str]:
    """One sentence per model on accuracy and the gap, and one on calibration."""
    out = []
    for name, m in metrics.models.items():
        val, v2, gap = m.val, m.v2, m.gap
        ci = interval(gap.ci95, 100, 1)
        title = model_label(name)
        out.append(f"{title[:1].upper()}{title[1:]} reaches {pct(val.accuracy)} top-1 accuracy on "
                   f"ImageNet val and {pct(v2.accuracy)} on ImageNetV2: "
                   f"a gap of {points(gap.accuracy)} points"
                   + (f" (95% CI {ci})" if ci else "") + ".")
        if val.ece is not None and v2.ece is not None:
            ece_ci = interval(gap.ece_ci95)
            more = "rises" if v2.ece > val.ece else "falls"
            out.append(f"Its expected calibration error {more} from {fmt(val.ece)} on val to {fmt(v2.ece)} on "
                       f"v2 (gap, val minus v2, {fmt(gap.ece)}"
                       + (f", 95% CI {ece_ci}" if ece_ci else "") + "); mean confidence goes from "
                       f"{fmt(val.mean_confidence)} to {fmt(v2.mean_confidence)}.")
    return out


def selection_sentence(summary: TrainSummary | None) -> str | None:
    """Where train made its choices (train_summary.json's ``selection``), and that val and v2 were not used;
    None when the run records no selection slice (no train summary, or an older run)."""
    record = summary.selection if summary else None
    if summary is None or record is None:
        return None
    if record.source == "select":
        where = f"the selection slice, ingest's split={record.split or 'select'} ({count(record.rows)} train rows)"
    else:
        share = f"{pct(record.fallback_fraction)} " if record.fallback_fraction is not None else ""
        where = (f"the selection slice, a hash-held-out {share}of train ({count(record.rows)} rows; the dataset has "
                 "no split=select)")
    scores = [f"{name} {pct(m.selection_accuracy)}" for name, m in summary.models.items()
              if m.selection_accuracy is not None]
    text = (f"Training choices (grid search, stopping, and the model shown in the per-class views) were made on "
            f"{where}" + (f", where the models score {', '.join(scores)}" if scores else ""))
    if record.rows == 0:
        text += "; it had no rows, so nothing was tuned or stopped early on it"
    if record.test_splits_read is False:
        return text + "; val and v2 were never used for selection."
    if record.test_splits_read:
        return text + "; this run's train stage also read val or v2."
    return text + "."


def _auc_phrase(auc: float | None, ci95: tuple[float, float] | None) -> str:
    ci = interval(ci95)
    return f"AUC {fmt(auc)}" + (f" {ci}" if ci else "")


def domain_sentences(shift: Shift) -> list[str]:
    """Plain sentences on the domain classifier (val vs v2, and the train vs val control)."""
    main, control = shift.domain_classifier.get("val_v2"), shift.domain_classifier.get("train_val")
    if main is None:
        return []
    text = f"The domain classifier separates val from v2 with {_auc_phrase(main.auc, main.ci95)}"
    if main.auc_pca is not None:
        ci = interval(main.ci95_pca)
        text += f" ({fmt(main.auc_pca)}{' ' + ci if ci else ''} on PCA-reduced features)"
    if control is not None and control.auc is not None:
        text += f"; the control pair (train vs val) gives {_auc_phrase(control.auc, control.ci95)}"
    out = [text + "."]
    if main.ci95:
        if main.ci95[0] > 0.5:
            out.append("Its interval lies above 0.5, so v2 is not a fresh sample from val's distribution: "
                       "a classifier can tell the two sets apart from the features alone.")
        elif main.ci95[1] >= 0.5:
            out.append("Its interval contains 0.5: on these features the two sets cannot be told apart.")
    if main.top_features:
        names = [str(t.feature) for t in main.top_features[:5]]
        out.append(f"It leans most on features {', '.join(names)}.")
    return out


def feature_sentences(shift: Shift) -> list[str]:
    """Plain sentences on the per-feature statistics."""
    main, control = shift.features.get("val_v2"), shift.features.get("train_val")
    if main is None:
        return []
    text = (f"{count(main.n_shifted)} of {count(main.n_features)} features shift by more than "
            f"{fmt(main.threshold, 2)} pooled standard deviations (|SMD|) between val and v2")
    if control is not None and control.n_shifted is not None:
        text += f", against {count(control.n_shifted)} between train and val (the control pair)"
    out = [text + "."]
    if main.top:
        t = max(main.top, key=lambda r: abs(r.smd or 0.0))
        out.append(f"The largest shift is feature {t.feature}: its mean moves from {fmt(t.mean_a)} to "
                   f"{fmt(t.mean_b)} (SMD {fmt(t.smd)}, Kolmogorov-Smirnov {fmt(t.ks)}, "
                   f"Wasserstein-1 {fmt(t.wasserstein)}).")
    return out


def label_sentences(shift: Shift) -> list[str]:
    """Plain sentences on the label distributions (total variation distance, chi-square p)."""
    main, control = shift.labels.get("val_v2"), shift.labels.get("train_val")
    if main is None or main.tvd is None:
        return []
    text = (f"The label distributions of val and v2 differ by a total variation distance of {fmt(main.tvd)}"
            + (f" (chi-square p = {fmt(main.p_value)})" if main.p_value is not None else ""))
    if control is not None and control.tvd is not None:
        text += f"; train and val differ by {fmt(control.tvd)}"
    return [text + "."]


def _confidence_sentence(model: str, c: ConfidenceShift) -> str | None:
    if c.val is None or c.v2 is None or c.val.mean is None or c.v2.mean is None:
        return None
    direction = "falls" if c.v2.mean < c.val.mean else "rises"
    return (f"The mean confidence of {model_label(model)} {direction} from {fmt(c.val.mean)} on val to "
            f"{fmt(c.v2.mean)} on v2 (Kolmogorov-Smirnov {fmt(c.ks)}, Wasserstein-1 {fmt(c.wasserstein)}).")


def confidence_sentences(shift: Shift) -> list[str]:
    """Plain sentences on each model's confidence on val and v2."""
    sentences = (_confidence_sentence(model, c) for model, c in shift.confidence.items())
    return [s for s in sentences if s is not None]


def per_class_sentences(per_class: "pd.DataFrame", model: str) -> list[str]:
    """Plain sentences on the per-class drops and where they concentrate."""
    data = per_class.dropna(subset=["val_accuracy", "v2_accuracy"])
    if data.empty:
        return []
    drops = data["val_accuracy"] - data["v2_accuracy"]
    worst = data.loc[drops.idxmax()]
    worse = int((drops > 0).sum())
    out = [f"For {model_label(model)}, accuracy falls on v2 in {worse:,} of {len(data):,} classes; the largest drop "
           f"is {class_label(worst['label'], worst.get('name'), worst.get('wnid'))}, from {pct(worst['val_accuracy'])} "
           f"(on {count(worst['val_n'])} val images) "
           f"to {pct(worst['v2_accuracy'])} (on {count(worst['v2_n'])} v2 images)."]
    positive = drops.clip(lower=0).sort_values(ascending=False)
    if positive.sum() > 0:
        share = positive.head(max(1, len(positive) // 10)).sum() / positive.sum()
        out.append(f"The tenth of classes with the largest drops accounts for {pct(share, 0)} of the total "
                   "per-class loss.")
    return out


def confusion_sentences(pairs: "pd.DataFrame") -> list[str]:
    """One sentence on the confusion that grows most from val to v2."""
    if pairs.empty:
        return []
    top = pairs.sort_values("growth", ascending=False).iloc[0]
    true = class_label(top["true_label"], top.get("true_name"), top.get("true_wnid"))
    predicted = class_label(top["predicted_label"], top.get("predicted_name"), top.get("predicted_wnid"))
    return [f"The confusion that grows most is {true} taken for {predicted}: "
            f"{pct(top['val_rate'])} of that class's val images, {pct(top['v2_rate'])} of its v2 images."]


def superclass_sentences(groups: "pd.DataFrame", model: str, grouping: str = "") -> list[str]:
    """Plain sentences on the accuracy drops per superclass (families of classes moving together).

    Parameters
    ----------
    groups : pandas.DataFrame
        The per-superclass table (``name, classes, val_accuracy, v2_accuracy, drop`` and the interval
        ``drop_ci95_low, drop_ci95_high`` when present).
    model : str
    grouping : str
        How the superclasses are formed (the metrics' ``classes.superclass_note``), for the sentence.
    """
    data = groups.dropna(subset=["drop"])
    if len(data) < 2:
        return []
    worst = data.loc[data["drop"].idxmax()]
    ci = interval((worst.get("drop_ci95_low"), worst.get("drop_ci95_high")), 100, 1)
    how = f" ({grouping})" if grouping else ""
    out = [f"By superclass{how}, {model_label(model)} loses most in {worst['name']}: "
           f"{pct(worst['val_accuracy'])} on val to {pct(worst['v2_accuracy'])} on v2 across its "
           f"{count(worst['classes'])} classes, a drop of {points(worst['drop'])} points"
           + (f" (95% CI {ci})" if ci else "") + "."]
    if "drop_ci95_low" in data:
        out.append(f"The drop's 95% interval lies above zero for {int((data['drop_ci95_low'] > 0).sum()):,} of "
                   f"{len(data):,} superclasses.")
    return out


def classes_sentence(info: ClassesInfo | None) -> str | None:
    """How the classes are named in the tables and figures, and why (None when the run does not say)."""
    if info is None or not info.note:
        return None
    if info.source == "imagenet":
        text = f"Classes are shown by ImageNet's names and WordNet ids: {info.note.split(': ', 1)[-1]}."
    elif info.source == "csv":
        text = f"Classes are shown by the names of {info.note.removeprefix('class names from ')}."
    else:
        text = f"Classes are shown by their index: {info.note.split(': ', 1)[-1]}."
    if info.superclass_note:
        text += f" Superclasses are {info.superclass_note}" + (f": {info.superclass_detail}" if
                                                                info.superclass_detail else "") + "."
    return text

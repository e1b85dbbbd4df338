"""The report's tables: rows of formatted strings built from the run's typed outputs."""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from gap_spark.contracts.run_outputs import Metrics, Shift, is_number
from gap_spark.present.blocks import Table
from gap_spark.present.content import PAIR_NAMES, model_label
from gap_spark.present.format import class_label, count, fmt, interval, pct, points

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "accuracy_rows", "calibration_rows", "confidence_rows", "confused_pairs_rows", "domain_rows", "feature_rows",
    "label_rows", "per_class_rows", "per_superclass_rows", "scalar_rows",
]


def _with_ci(value: str, ci: str) -> str:
    return f"{value} {ci}".strip()


def accuracy_rows(metrics: Metrics) -> Table:
    """Accuracy, top-5 and macro-F1 on both sets, with the gaps and their intervals."""
    rows = []
    for name, m in metrics.models.items():
        val, v2, gap = m.val, m.v2, m.gap
        rows.append([name, count(val.rows), count(v2.rows), pct(val.accuracy), pct(v2.accuracy),
                     _with_ci(points(gap.accuracy), interval(gap.ci95, 100, 1)),
                     pct(val.top5_accuracy), pct(v2.top5_accuracy), fmt(val.macro_f1), fmt(v2.macro_f1),
                     _with_ci(fmt(gap.macro_f1), interval(gap.macro_f1_ci95))])
    return Table("Accuracy on both sets; gaps are val minus v2 with 95% bootstrap intervals (accuracy gap in "
                 "percentage points).",
                 ["model", "val rows", "v2 rows", "top-1 val", "top-1 v2", "top-1 gap [CI]", "top-5 val",
                  "top-5 v2", "macro-F1 val", "macro-F1 v2", "macro-F1 gap [CI]"], rows,
                 [False] + [True] * 10)


def calibration_rows(metrics: Metrics) -> Table:
    """ECE, log-loss, mean confidence and accuracy on confident and unconfident predictions."""
    rows = []
    for name, m in metrics.models.items():
        val, v2, gap = m.val, m.v2, m.gap
        rows.append([name, fmt(val.ece), fmt(v2.ece), _with_ci(fmt(gap.ece), interval(gap.ece_ci95)),
                     fmt(val.log_loss), fmt(v2.log_loss), fmt(val.mean_confidence), fmt(v2.mean_confidence),
                     pct(val.confident_accuracy), pct(v2.confident_accuracy),
                     pct(val.unconfident_accuracy), pct(v2.unconfident_accuracy)])
    return Table("Calibration: expected calibration error (ECE gap is val minus v2), log-loss, mean confidence, "
                 "and accuracy on confident and unconfident predictions.",
                 ["model", "ECE val", "ECE v2", "ECE gap [CI]", "log-loss val", "log-loss v2", "mean conf. val",
                  "mean conf. v2", "acc. confident val", "acc. confident v2", "acc. unconfident val",
                  "acc. unconfident v2"], rows, [False] + [True] * 11)


def domain_rows(shift: Shift) -> Table | None:
    """The domain classifiers of both pairs, or None when the run has neither."""
    rows = []
    for pair, label in (("val_v2", "val vs v2"), ("train_val", "train vs val (control)")):
        c = shift.domain_classifier.get(pair)
        if c is not None:
            rows.append([label, _with_ci(fmt(c.auc), interval(c.ci95)),
                         _with_ci(fmt(c.auc_pca), interval(c.ci95_pca)), count(c.rows_per_set)])
    if not rows:
        return None
    return Table("Domain classifier: cross-validated ROC AUC with its 95% interval (0.5 = indistinguishable).",
                 ["pair", "AUC [CI]", "AUC on PCA features [CI]", "rows per set"], rows, [False, True, True, True])


def feature_rows(shift: Shift, pair: str, top_rows: int) -> Table | None:
    """The most shifted features of one pair, or None when it has none."""
    block = shift.features.get(pair)
    if block is None or not block.top:
        return None
    a, b = ("val", "v2") if pair == "val_v2" else ("train", "val")
    rows = [[str(t.feature), fmt(t.mean_a), fmt(t.mean_b), fmt(t.std_a), fmt(t.std_b), fmt(t.smd), fmt(t.ks),
             fmt(t.wasserstein)] for t in block.top[:top_rows]]
    return Table(f"Most shifted features, {a} → {b}: means, standard deviations, standardised mean difference, "
                 "Kolmogorov-Smirnov statistic and Wasserstein-1 distance.",
                 ["feature", f"mean {a}", f"mean {b}", f"SD {a}", f"SD {b}", "SMD", "KS", "W1"], rows,
                 [False] + [True] * 7)


def per_class_rows(per_class: "pd.DataFrame", model: str, top_rows: int) -> Table:
    """The classes with the largest accuracy drop."""
    data = per_class.assign(_drop=per_class["val_accuracy"] - per_class["v2_accuracy"])
    data = data.dropna(subset=["_drop"]).sort_values("_drop", ascending=False).head(top_rows)
    rows = [[class_label(r["label"], r.get("name"), r.get("wnid")), pct(r["val_accuracy"]), count(r["val_n"]),
             pct(r["v2_accuracy"]), count(r["v2_n"]), points(r["_drop"])] for _, r in data.iterrows()]
    return Table(f"Classes with the largest accuracy drop for {model_label(model)} (drop in percentage points).",
                 ["class", "val accuracy", "val images", "v2 accuracy", "v2 images", "drop"], rows,
                 [False, True, True, True, True, True])


def confused_pairs_rows(pairs: "pd.DataFrame", model: str, top_rows: int) -> Table:
    """The confusions that grow most from val to v2."""
    data = pairs.sort_values("growth", ascending=False).head(top_rows)
    rows = [[class_label(r["true_label"], r.get("true_name"), r.get("true_wnid")),
             class_label(r["predicted_label"], r.get("predicted_name"), r.get("predicted_wnid")),
             f"{pct(r['val_rate'])} ({count(r['val_count'])})",
             f"{pct(r['v2_rate'])} ({count(r['v2_count'])})", points(r["growth"])] for _, r in data.iterrows()]
    return Table(f"Confusions of {model_label(model)} that grow most from val to v2 (rate = share of the true "
                 "class's images; growth in percentage points).",
                 ["true class", "predicted as", "val rate (count)", "v2 rate (count)", "growth"], rows,
                 [False, False, True, True, True])


def per_superclass_rows(groups: "pd.DataFrame", model: str, top_rows: int) -> Table:
    """The superclasses with the largest accuracy drop (with the drop's 95% interval when the table has it)."""
    data = groups.dropna(subset=["drop"]).sort_values("drop", ascending=False).head(top_rows)
    rows = []
    for _, r in data.iterrows():
        ci = interval((r.get("drop_ci95_low"), r.get("drop_ci95_high")), 100, 1)
        rows.append([str(r["name"]), count(r["classes"]), pct(r["val_accuracy"]), count(r["val_n"]),
                     pct(r["v2_accuracy"]), count(r["v2_n"]), _with_ci(points(r["drop"]), ci)])
    return Table(f"Superclasses with the largest accuracy drop for {model_label(model)} (images of the member "
                 "classes pooled; drop in percentage points with a 95% normal-approximation interval).",
                 ["superclass", "classes", "val accuracy", "val images", "v2 accuracy", "v2 images", "drop [CI]"],
                 rows, [False] + [True] * 6)


def label_rows(shift: Shift) -> Table | None:
    """Label shift per pair; the section as key-value pairs when its layout is another one."""
    rows = []
    for pair, block in shift.labels.items():
        if block.tvd is not None:
            a, b = PAIR_NAMES.get(pair, ("a", "b"))
            rows.append([f"{a} vs {b}", count(block.rows_a), count(block.rows_b),
                         f"{count(block.classes_a)} / {count(block.classes_b)}", fmt(block.tvd),
                         fmt(block.chi2, 1), count(block.dof), fmt(block.p_value)])
    if not rows:
        return scalar_rows("Label shift between the sets, as the shift stage reports it.", shift.raw_labels)
    return Table("Label distributions: total variation distance and chi-square test of homogeneity.",
                 ["pair", "rows a", "rows b", "classes a / b", "TVD", "chi-square", "dof", "p"], rows,
                 [False] + [True] * 7)


def confidence_rows(shift: Shift) -> Table | None:
    """Each model's confidence on val and v2; the section as key-value pairs when its layout is another one."""
    rows = []
    for model, c in shift.confidence.items():
        if c.val is not None and c.v2 is not None:
            rows.append([model, fmt(c.val.mean), fmt(c.v2.mean), fmt(c.val.median), fmt(c.v2.median),
                         fmt(c.val.q05), fmt(c.v2.q05), fmt(c.ks), fmt(c.wasserstein)])
    if not rows:
        return scalar_rows("Confidence shift of the evaluated models, as the shift stage reports it.",
                           shift.raw_confidence)
    return Table("Confidence of each model's top prediction on val and v2: mean, median, 5th percentile, and "
                 "the Kolmogorov-Smirnov and Wasserstein-1 distances between the two distributions.",
                 ["model", "mean val", "mean v2", "median val", "median v2", "5% val", "5% v2", "KS", "W1"], rows,
                 [False] + [True] * 8)


def _flatten_scalars(obj: Any, prefix: str = "", depth: int = 0) -> list[tuple[str, str]]:
    """Scalar leaves of a nested mapping as (dotted key, text)."""
    out: list[tuple[str, str]] = []
    if isinstance(obj, Mapping) and depth < 3:
        for key, value in obj.items():
            out.extend(_flatten_scalars(value, f"{prefix}{key}.", depth + 1))
    elif isinstance(obj, bool) or obj is None:
        out.append((prefix.rstrip("."), str(obj)))
    elif is_number(obj):
        out.append((prefix.rstrip("."), count(obj) if isinstance(obj, int) else fmt(obj, 4)))
    elif isinstance(obj, str):
        out.append((prefix.rstrip("."), obj))
    elif isinstance(obj, (list, tuple)) and len(obj) <= 4 and all(is_number(v) for v in obj):
        out.append((prefix.rstrip("."), "[" + ", ".join(fmt(v, 4) for v in obj) + "]"))
    return out


def scalar_rows(caption: str, obj: Mapping[str, Any]) -> Table | None:
    """A section of unknown layout as (dotted key, value) rows, or None when it has no scalar."""
    if not obj:
        return None
    rows = [[k, v] for k, v in _flatten_scalars(obj)]
    if not rows:
        return None
    return Table(caption, ["measure", "value"], rows, [False, True])

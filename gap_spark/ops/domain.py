"""The domain classifier: a two-sample test of whether a classifier can tell two sets apart.

A sample of about ``rows_per_set`` rows per set with the same number of rows per class from both sets
(:func:`balanced_sample`), cross-validated logistic regression with the folds taken within each class,
on standardised features and on principal components of them (:func:`domain_auc`). Matching the classes
keeps the label shift (reported apart) out of this test and avoids the AUC falling below 0.5 under
cross-validation when nothing shifts. The out-of-fold scores give the ROC AUC
(``BinaryClassificationEvaluator``, exact: ``numBins=0``) and a 95% DeLong interval
(:func:`delong_interval`). 0.5 means the sets cannot be told apart within classes. The features it
leans on are those with the largest mean ``|coefficient|`` over the folds.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from gap_spark.core.errors import DatasetError
from gap_spark.ops.frames import matched_quotas

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegressionModel
    from pyspark.ml.evaluation import BinaryClassificationEvaluator
    from pyspark.sql import Column, DataFrame

__all__ = ["balanced_sample", "cross_validated_scores", "delong_interval", "domain_auc", "domain_pipeline"]

FEATURES_COL = "features"
LABEL_COL = "label"


def delong_interval(labels: np.ndarray, scores: np.ndarray, level: float = 0.95) -> dict[str, Any]:
    """ROC AUC of ``scores`` for ``labels`` (1 = positive) with DeLong's normal-approximation interval.

    Ties count one half. The variance is ``var(V10)/m + var(V01)/n`` over the structural components
    (placement values) of the ``m`` positives and ``n`` negatives (DeLong, DeLong and Clarke-Pearson 1988).

    Parameters
    ----------
    labels, scores : numpy.ndarray
        1 for a positive, 0 for a negative (at least two of each), and the scores.
    level : float
        Coverage of the interval.

    Returns
    -------
    dict
        ``auc``, ``se``, ``half_width`` (``z * se``) and ``ci`` (``auc -+ half_width``, clipped to
        ``[0, 1]``).
    """
    from scipy.stats import norm, rankdata

    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    positives, negatives = scores[labels == 1], scores[labels == 0]
    m, n = len(positives), len(negatives)
    if m < 2 or n < 2:
        raise ValueError(f"the AUC interval needs at least 2 positives and 2 negatives, got {m} and {n}")
    ranks = rankdata(np.concatenate([positives, negatives]))
    # Negatives below each positive (ties one half), and positives above each negative.
    v10 = (ranks[:m] - rankdata(positives)) / n
    v01 = 1.0 - (ranks[m:] - rankdata(negatives)) / m
    auc = float(v10.mean())
    se = math.sqrt(v10.var(ddof=1) / m + v01.var(ddof=1) / n)
    half_width = float(norm.ppf(0.5 + level / 2)) * se
    return {"auc": auc, "se": se, "half_width": half_width,
            "ci": [max(0.0, auc - half_width), min(1.0, auc + half_width)]}


def balanced_sample(df_a: "DataFrame", df_b: "DataFrame", rows_per_set: int, seed: int,
                    strata: str | None = LABEL_COL) -> "DataFrame":
    """Random rows of two frames, the same number from each, and within each class the same number too.

    Matching the classes matters for the domain classifier. The features say which class a row is,
    so a sample whose sets differ in class make-up lets the classifier score the classes, not a shift
    (that is the label shift, measured apart). Worse, under cross-validation a class with more rows of
    one set in the training folds has fewer of it in the held-out fold, which drives the AUC *below*
    0.5 when there is no shift at all. With the same rows per class and set, and folds taken within
    each class (:func:`domain_auc` uses ``stratum_rank``), neither can happen.

    Parameters
    ----------
    df_a, df_b : DataFrame
        Frames with ``features`` and, unless ``strata`` is None, the class column ``strata``.
    rows_per_set : int
        Target rows per set (fewer when the classes the sets share have fewer rows).
    seed : int
        Seed of the sampling.
    strata : str or None
        The class column to match on; None samples each set as a whole.

    Returns
    -------
    DataFrame
        ``features``, ``label`` (0.0 for rows of ``df_a``, 1.0 for rows of ``df_b``), ``stratum`` and
        ``stratum_rank`` (1, 2, ... in random order within each stratum and set).
    """
    from pyspark.sql import functions as F

    frames = []
    for frame in (df_a, df_b):
        stratum = F.col(strata).cast("long") if strata else F.lit(0).cast("long")
        frames.append(frame.select(F.col(FEATURES_COL), stratum.alias("stratum")))
    counts = [{int(r["stratum"]): int(r["count"]) for r in f.groupBy("stratum").count().collect()} for f in frames]
    quotas = matched_quotas(counts[0], counts[1], int(rows_per_set), seed)
    if not quotas:
        raise DatasetError("cannot sample for the domain classifier: the two sets share no class")

    parts = []
    for i, (frame, count) in enumerate(zip(frames, counts)):
        # Bernoulli sampling per class with a margin (about 3 sd plus 10 rows), then exact counts below.
        fractions = {c: min(1.0, (1.1 * q + 3 * math.sqrt(q) + 10) / count[c]) for c, q in quotas.items()}
        sampled = frame.sampleBy("stratum", fractions, seed=seed + 1 + i)
        parts.append(sampled.withColumn(LABEL_COL, F.lit(float(i))))
    return _take_quotas(parts[0].unionByName(parts[1]), quotas, seed)


def _take_quotas(both: "DataFrame", quotas: dict[int, int], seed: int) -> "DataFrame":
    """The first ``quota`` rows per class and set of the Bernoulli sample, in random order, as many of each set."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    both = both.withColumn("_order", F.rand(seed + 3))
    quota_frame = both.sparkSession.createDataFrame(list(quotas.items()), "stratum long, _quota long")
    group, stratum = Window.partitionBy("stratum", LABEL_COL), Window.partitionBy("stratum")
    both = (both.join(F.broadcast(quota_frame), "stratum")
            .withColumn("stratum_rank", F.row_number().over(group.orderBy("_order")))
            .withColumn("_available", F.count(F.lit(1)).over(group)))
    # Both sets take the same number per class, even where the Bernoulli step fell short for one.
    take = F.least(F.col("_quota"), F.min("_available").over(stratum))
    both = (both.withColumn("_sets", F.size(F.collect_set(LABEL_COL).over(stratum)))
            .withColumn("_take", take)
            .filter((F.col("_sets") == 2) & (F.col("stratum_rank") <= F.col("_take"))))
    return both.select(FEATURES_COL, LABEL_COL, "stratum", "stratum_rank")


def domain_pipeline(pca_k: int | None, reg_param: float, max_iter: int) -> "Pipeline":
    """The unfitted classifier: ``vector`` standardised (then ``pca_k`` components), L2 logistic regression
    of ``label`` (also the explain stage's density ratio)."""
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import PCA, StandardScaler

    stages: list = [StandardScaler(inputCol="vector", outputCol="scaled", withMean=True, withStd=True)]
    column = "scaled"
    if pca_k is not None:
        stages.append(PCA(k=pca_k, inputCol="scaled", outputCol="components"))
        column = "components"
    # The features are standardised already, so the coefficients (and the penalty) are on that scale.
    stages.append(LogisticRegression(featuresCol=column, labelCol=LABEL_COL, regParam=reg_param,
                                     elasticNetParam=0.0, maxIter=max_iter, standardization=pca_k is not None))
    return Pipeline(stages=stages)


def cross_validated_scores(data: "DataFrame", folds: int, pca_k: int | None, reg_param: float,
                           max_iter: int) -> tuple["DataFrame", list[np.ndarray]]:
    """Out-of-fold probability of label 1 for every row, and the coefficients of each fold's model.

    Parameters
    ----------
    data : DataFrame
        ``vector`` (ml Vector), ``label`` (0.0/1.0) and ``fold`` (int in ``[0, folds)``); persist it.
    folds : int
        Number of folds.
    pca_k : int or None
        Fit on this many principal components of the standardised features; None: on all of them.
    reg_param, max_iter : float, int
        L2 penalty and iteration limit of the logistic regression.

    Returns
    -------
    (DataFrame, list of numpy.ndarray)
        ``label, score, fold`` for every row (not persisted), and one coefficient vector per fold.
    """
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    scored = None
    coefficients = []
    for fold in range(folds):
        model = domain_pipeline(pca_k, reg_param, max_iter).fit(data.filter(F.col("fold") != fold))
        classifier = cast("LogisticRegressionModel", model.stages[-1])
        coefficients.append(classifier.coefficients.toArray())
        held_out = model.transform(data.filter(F.col("fold") == fold)).select(
            LABEL_COL, vector_to_array(F.col("probability"))[1].alias("score"), "fold")
        scored = held_out if scored is None else scored.unionByName(held_out)
    assert scored is not None
    return scored, coefficients


def _fold_column(sample: "DataFrame", folds: int, seed: int) -> "Column":
    """Each row's fold: dealt within class when the sample has ``stratum_rank``, else random."""
    from pyspark.sql import functions as F

    if "stratum_rank" in sample.columns:
        # Deal each set's rows, ordered by class then rank, round-robin into the folds. Both sets have the
        # same rows per class, so the n-th row of either set has the same class and fold: every fold holds
        # the same rows per class from both sets, even when most classes have a single row per set.
        from pyspark.sql import Window

        keys = [c for c in ("stratum", "stratum_rank") if c in sample.columns]
        order = Window.partitionBy(LABEL_COL).orderBy(*keys)
        return ((F.row_number().over(order) - 1) % folds).cast("int")
    return F.floor(F.rand(seed) * folds).cast("int")


def domain_auc(sample: "DataFrame", folds: int = 3, seed: int = 13, pca_k: int | None = None,
               reg_param: float = 0.01, max_iter: int = 100, top_features: int = 20) -> dict[str, Any]:
    """Cross-validated ROC AUC of a logistic regression telling label 0 from label 1.

    Parameters
    ----------
    sample : DataFrame
        ``features array<float>, label double`` and, optionally, ``stratum`` and ``stratum_rank``
        (see :func:`balanced_sample`).
    folds : int
        Number of cross-validation folds. With ``stratum_rank``, each set's rows, ordered by class and
        rank, are dealt round-robin (the n-th row goes to fold ``(n - 1) mod folds``), so every fold
        has the same rows per class from both sets; otherwise folds are random.
    seed : int
        Seed of the fold assignment.
    pca_k : int or None
        Also report the AUC on this many principal components of the standardised features
        (``auc_pca``); None skips it.
    reg_param, max_iter : float, int
        L2 penalty and iteration limit of the logistic regression.
    top_features : int
        How many features to list by mean ``|coefficient|`` over the folds.

    Returns
    -------
    dict
        ``auc`` (BinaryClassificationEvaluator on all out-of-fold scores), ``ci95`` (DeLong), ``se``,
        ``fold_auc``; the same four with ``_pca`` (and ``pca_k``, cut to D) when ``pca_k`` is given;
        ``rows`` (``{"a": label-0 rows, "b": label-1 rows}``), ``rows_per_set`` (the smaller),
        ``folds`` and ``top_features`` (``[{"feature", "importance", "coefficient"}]``, importance =
        ``|mean coefficient|`` on standardised features).
    """
    from pyspark.ml.evaluation import BinaryClassificationEvaluator
    from pyspark.ml.functions import array_to_vector, vector_to_array
    from pyspark.sql import functions as F

    data = sample.select(array_to_vector(F.col(FEATURES_COL)).alias("vector"), F.col(LABEL_COL).cast("double"),
                         _fold_column(sample, folds, seed).alias("fold")).persist()
    try:
        summary = data.groupBy(LABEL_COL).agg(F.count(F.lit(1)).alias("rows"),
                                              F.max(F.size(vector_to_array(F.col("vector")))).alias("dim")).collect()
        counts = {int(r[LABEL_COL]): int(r["rows"]) for r in summary}
        if counts.get(0, 0) < folds or counts.get(1, 0) < folds:
            raise DatasetError(f"the domain classifier needs at least {folds} rows of each set, got {counts}")
        dim = max(int(r["dim"]) for r in summary)
        evaluator = BinaryClassificationEvaluator(rawPredictionCol="score", labelCol=LABEL_COL,
                                                  metricName="areaUnderROC", numBins=0)
        out: dict[str, Any] = {"rows": {"a": counts.get(0, 0), "b": counts.get(1, 0)},
                               "rows_per_set": min(counts.get(0, 0), counts.get(1, 0)), "folds": folds}
        variants: list[tuple[str, int | None]] = [("", None)]
        if pca_k is not None:
            out["pca_k"] = min(int(pca_k), dim)
            variants.append(("_pca", out["pca_k"]))
        for suffix, k in variants:
            coefficients = _score_variant(out, suffix, data, evaluator, folds, k, reg_param, max_iter)
            if k is None:
                out["top_features"] = _top_features(coefficients, top_features)
        return out
    finally:
        data.unpersist()


def _score_variant(out: dict[str, Any], suffix: str, data: "DataFrame", evaluator: "BinaryClassificationEvaluator",
                   folds: int, pca_k: int | None, reg_param: float, max_iter: int) -> list[np.ndarray]:
    """Cross-validate one variant, put ``auc, ci95, se, fold_auc`` (+ ``suffix``) in ``out``; the coefficients."""
    scored, coefficients = cross_validated_scores(data, folds, pca_k, reg_param, max_iter)
    scored = scored.persist()
    try:
        auc = float(evaluator.evaluate(scored))
        local: pd.DataFrame = scored.toPandas()  # the out-of-fold scores of the sample: small
    finally:
        scored.unpersist()
    interval = delong_interval(local[LABEL_COL].to_numpy(), local["score"].to_numpy())
    half = interval["half_width"]
    out[f"auc{suffix}"] = auc
    # DeLong's interval, centred on the evaluator's AUC (the two agree; numBins=0 is exact).
    out[f"ci95{suffix}"] = [max(0.0, auc - half), min(1.0, auc + half)]
    out[f"se{suffix}"] = interval["se"]
    out[f"fold_auc{suffix}"] = [_fold_auc(local[local["fold"] == f]) for f in range(folds)]
    return coefficients


def _top_features(coefficients: list[np.ndarray], top: int) -> list[dict[str, Any]]:
    """The ``top`` features by ``|mean coefficient|`` over the folds (ties: the lower index first)."""
    mean_coefficients = np.mean(coefficients, axis=0)
    order = np.argsort(-np.abs(mean_coefficients), kind="stable")[:top]
    return [{"feature": int(i), "importance": float(abs(mean_coefficients[i])),
             "coefficient": float(mean_coefficients[i])} for i in order]


def _fold_auc(frame: "pd.DataFrame") -> float | None:
    """The AUC of one fold's scores; None when it has fewer than two rows of either set."""
    labels = frame[LABEL_COL].to_numpy()
    if (labels == 1).sum() < 2 or (labels == 0).sum() < 2:
        return None
    return float(delong_interval(labels, frame["score"].to_numpy())["auc"])

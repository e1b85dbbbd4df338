"""The density ratio between val and v2: ``w(x) = p(v2 | x) / p(val | x) * n_val / n_v2``, cross-fitted.

A logistic regression tells v2's rows from val's (:func:`~gap_spark.ops.domain.domain_pipeline`: the
features standardised, optionally PCA, L2 penalty). Every row of both sets is used, each is put in one
of ``folds`` folds by a hash of ``(seed, set, row_id)`` (never by its label, so v2's labels are not
read), and each is scored by the model fitted on the other folds (:func:`cross_fitted_logits`). Its
log-odds ``logit = log p / (1 - p)`` give ``w = exp(logit) * n_val / n_v2`` (:func:`ratio_frame`).

A second, small regression (:func:`stacked_logits`) can add a model's own scores (the log-odds of its
top probability and its entropy) to the first one's out-of-fold log-odds, fitted on the same folds: a
shift in difficulty, such as a selection of the rows between two classes, is not linear in the features
but is plain in the model's confidence.

Weights are clipped at a quantile of val's weights; :func:`weight_diagnostics` gives Kish's effective
sample size ``(sum w)^2 / sum w^2`` and the share of the total weight held by the top 1% of rows. Only
aggregates reach the driver.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from gap_spark.ops.domain import domain_pipeline
from gap_spark.ops.frames import hash_uniform

if TYPE_CHECKING:
    from pyspark.ml import PipelineModel
    from pyspark.sql import DataFrame

__all__ = [
    "DOMAIN_COL", "ESS_WARNING_FRACTION", "cross_fitted_logits", "domain_rows", "mean_logit", "ratio_frame",
    "stacked_logits", "weight_diagnostics",
]

# The classifier's target: 0.0 for a val row, 1.0 for a v2 row (named ``label`` inside the fits).
DOMAIN_COL = "domain"
# Below this share of the rows, the effective sample size earns a warning.
ESS_WARNING_FRACTION = 0.1
_MAX_LOGIT = 30.0  # exp(30) ~ 1e13: beyond any clip, and no overflow


def domain_rows(val: "DataFrame", v2: "DataFrame", folds: int, seed: int) -> "DataFrame":
    """Both sets' rows as the domain classifier reads them, each with its fold.

    Parameters
    ----------
    val, v2 : DataFrame
        Dataset rows with ``row_id`` and ``features`` (``array<float>``).
    folds : int
        Number of folds.
    seed : int
        Seed of the fold hash.

    Returns
    -------
    DataFrame
        ``row_id long, domain double, fold int, vector`` (an ML vector of the features).
    """
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import functions as F

    parts = []
    for domain, frame in ((0, val), (1, v2)):
        u = hash_uniform(F.lit(int(seed)), F.lit(domain), F.col("row_id"))
        parts.append(frame.select(F.col("row_id").cast("long").alias("row_id"),
                                  F.lit(float(domain)).alias(DOMAIN_COL),
                                  F.least(F.floor(u * folds), F.lit(folds - 1)).cast("int").alias("fold"),
                                  array_to_vector(F.col("features")).alias("vector")))
    return parts[0].unionByName(parts[1])


def cross_fitted_logits(data: "DataFrame", folds: int, pca_k: int | None, reg_param: float,
                        max_iter: int) -> tuple["DataFrame", list["PipelineModel"]]:
    """Each row's log-odds of being a v2 row, from the model fitted without its fold.

    Parameters
    ----------
    data : DataFrame
        :func:`domain_rows` (persist it: it is read twice per fold).
    folds : int
        Number of folds.
    pca_k : int or None
        Principal components the classifier reads; None: every standardised feature.
    reg_param, max_iter : float, int
        L2 penalty and iteration limit.

    Returns
    -------
    (DataFrame, list of PipelineModel)
        ``row_id, domain, fold, logit`` for every row (not persisted), and the fold models (for
        :func:`mean_logit` on other rows).
    """
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    train_view = data.select("vector", F.col(DOMAIN_COL).alias("label"), "fold")
    scored: DataFrame | None = None
    models = []
    for fold in range(folds):
        model = domain_pipeline(pca_k, reg_param, max_iter).fit(train_view.filter(F.col("fold") != fold))
        models.append(model)
        held_out = model.transform(data.filter(F.col("fold") == fold)).select(
            "row_id", DOMAIN_COL, "fold", vector_to_array(F.col("rawPrediction"))[1].alias("logit"))
        scored = held_out if scored is None else scored.unionByName(held_out)
    assert scored is not None
    return scored, models


def mean_logit(models: list["PipelineModel"], frame: "DataFrame") -> "DataFrame":
    """The fold models' mean log-odds for rows none of them saw (train rows, for example).

    Parameters
    ----------
    models : list of PipelineModel
        From :func:`cross_fitted_logits`.
    frame : DataFrame
        Has ``row_id`` and ``features`` (``array<float>``).

    Returns
    -------
    DataFrame
        ``row_id, logit``.
    """
    from pyspark.ml.functions import array_to_vector, vector_to_array
    from pyspark.sql import functions as F

    base = frame.select("row_id", array_to_vector(F.col("features")).alias("vector"))
    total: Any = F.lit(0.0)
    for i, model in enumerate(models):
        base = model.transform(base).select(*base.columns,
                                            vector_to_array(F.col("rawPrediction"))[1].alias(f"_l{i}"))
        total = total + F.col(f"_l{i}")
    return base.select("row_id", (total / len(models)).alias("logit"))


def _score_basis(frame: "DataFrame", bins: int) -> "DataFrame":
    """``stack``: the features' log-odds, both scores, and one indicator per quantile bin of each score
    (the pooled sets' quantiles; no label is read), so the log-ratio can bend with the scores."""
    from pyspark.ml import Pipeline
    from pyspark.ml.feature import OneHotEncoder, QuantileDiscretizer, VectorAssembler

    scores = ["conf_logit", "entropy"]
    binned = [f"{c}_bin" for c in scores]
    dummies = [f"{c}_hot" for c in scores]
    pipeline = Pipeline(stages=[
        QuantileDiscretizer(inputCols=scores, outputCols=binned, numBucketsArray=[bins] * len(scores),
                            relativeError=1e-4),
        OneHotEncoder(inputCols=binned, outputCols=dummies, dropLast=True),
        VectorAssembler(inputCols=["logit", *scores, *dummies], outputCol="stack"),
    ])
    return pipeline.fit(frame).transform(frame)


def stacked_logits(first: "DataFrame", scores: "DataFrame", folds: int, reg_param: float,
                   max_iter: int, score_bins: int = 10) -> "DataFrame":
    """Cross-fitted log-odds from the features' out-of-fold log-odds and a model's scores, on the same folds.

    The small regression reads the features' log-odds, the log-odds of the top probability, the entropy,
    and indicators of ``score_bins`` quantile bins of both scores: the log-ratio is linear in the
    features plus a step function of each score.

    Parameters
    ----------
    first : DataFrame
        :func:`cross_fitted_logits`' rows (``row_id, domain, fold, logit``).
    scores : DataFrame
        ``row_id, domain, confidence, entropy`` for every row of both sets (a model's predictions).
    folds : int
    reg_param, max_iter : float, int
        L2 penalty and iteration limit of the small regression (standardised inputs).
    score_bins : int
        Quantile bins of each score.

    Returns
    -------
    DataFrame
        ``row_id, domain, fold, logit``.
    """
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    conf = F.least(F.greatest(F.col("confidence"), F.lit(1e-6)), F.lit(1 - 1e-6))
    joined = first.join(scores.select("row_id", DOMAIN_COL, F.log(conf / (1 - conf)).alias("conf_logit"),
                                      F.col("entropy").cast("double").alias("entropy")), ["row_id", DOMAIN_COL])
    inputs = _score_basis(joined, score_bins).select("row_id", DOMAIN_COL, "fold", "stack",
                                                     F.col(DOMAIN_COL).alias("label")).persist()
    try:
        parts = []
        for fold in range(folds):
            lr = LogisticRegression(featuresCol="stack", labelCol="label", regParam=reg_param, maxIter=max_iter)
            model = lr.fit(inputs.filter(F.col("fold") != fold))
            parts.append(model.transform(inputs.filter(F.col("fold") == fold)).select(
                "row_id", DOMAIN_COL, "fold", vector_to_array(F.col("rawPrediction"))[1].alias("logit")))
        out = parts[0]
        for part in parts[1:]:
            out = out.unionByName(part)
        return out.localCheckpoint()  # the fold fits stay behind; only the small result is kept
    finally:
        inputs.unpersist()


def ratio_frame(logits: "DataFrame", n_val: int, n_v2: int, clip_quantile: float) -> tuple["DataFrame", float]:
    """val's density ratios ``w = exp(logit) * n_val / n_v2``, clipped at their ``clip_quantile``.

    Parameters
    ----------
    logits : DataFrame
        ``row_id, domain, logit`` (val's rows are those with domain 0; v2's are ignored).
    n_val, n_v2 : int
        Rows of each set in the classifier's data (the log-odds carry the prior ``n_v2 / n_val``).
    clip_quantile : float
        Weights above this quantile of val's weights become that quantile (1.0: no clipping).

    Returns
    -------
    (DataFrame, float)
        ``row_id, ratio_raw, ratio`` (val's rows), and the clipping threshold.
    """
    from pyspark.sql import functions as F

    prior = math.log(n_val / n_v2)
    logit = F.least(F.greatest(F.col("logit"), F.lit(-_MAX_LOGIT)), F.lit(_MAX_LOGIT))
    raw = logits.where(F.col(DOMAIN_COL) == 0).select("row_id", F.exp(logit + F.lit(prior)).alias("ratio_raw"))
    row = raw.agg(F.percentile("ratio_raw", float(clip_quantile)).alias("q")).first()
    threshold = float(row["q"]) if row and row["q"] is not None else math.inf
    return raw.withColumn("ratio", F.least(F.col("ratio_raw"), F.lit(threshold))), threshold


def weight_diagnostics(ratios: "DataFrame", threshold: float, top_share: float = 0.01) -> dict[str, Any]:
    """Kish's effective sample size, the weight held by the top rows, and the clipping, in two small jobs.

    Parameters
    ----------
    ratios : DataFrame
        :func:`ratio_frame`'s ``row_id, ratio_raw, ratio``.
    threshold : float
        The clipping threshold.
    top_share : float
        The top fraction of rows whose share of the weight is reported (the top ``ceil(n * top_share)``).

    Returns
    -------
    dict
        ``rows, mean, max, ess, ess_fraction, top1_share, clip_threshold, clipped_rows, ess_warning``
        (True under :data:`ESS_WARNING_FRACTION` of the rows).
    """
    from pyspark.sql import functions as F

    row = ratios.agg(F.count(F.lit(1)).alias("n"), F.sum("ratio").alias("s"), F.sum(F.col("ratio") ** 2).alias("s2"),
                     F.max("ratio").alias("max"),
                     F.sum((F.col("ratio_raw") > F.col("ratio")).cast("long")).alias("clipped")).first()
    n = int(row["n"]) if row else 0
    if row is None or n == 0 or not row["s"]:
        return {"rows": n, "ess": None, "ess_fraction": None, "ess_warning": True}
    top_rows = max(1, math.ceil(n * top_share))
    top = ratios.orderBy(F.col("ratio").desc()).limit(top_rows).agg(F.sum("ratio").alias("t")).first()
    total, squares = float(row["s"]), float(row["s2"])
    ess = total * total / squares
    return {"rows": n, "mean": total / n, "max": float(row["max"]), "ess": ess, "ess_fraction": ess / n,
            "top1_share": float(top["t"]) / total if top else None, "top_rows": top_rows,
            "clip_threshold": threshold, "clipped_rows": int(row["clipped"]),
            "ess_warning": ess < ESS_WARNING_FRACTION * n}

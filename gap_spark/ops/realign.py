"""Feature re-alignment of the target set (v2) for a saved model, as an affine map of its raw features.

A saved model standardises its input with train's mean and standard deviation (its ``StandardScaler``).
In that standardised space, ``z = (x - mu_m) / sd_m``:

- **AdaBN-style** (:func:`adabn_map`): v2 is standardised by *its own* mean and sd instead,
  ``z' = (x - mu_v2) / sd_v2`` (Li et al. 2016 re-estimate batch-norm statistics on the target domain);
- **CORAL** (:func:`coral_map`, Sun, Feng and Saenko 2016): v2's second moments are matched to the source's,
  ``z' = (z - m_t) C_t^(-1/2) C_s^(1/2) + m_s``, with ``C + lambda I`` for both covariances (shrinkage;
  Sun et al. use lambda = 1). The source is val, a sample of the process train comes from, whose
  covariance costs a fraction of train's.

Both become ``x' = x A + b`` in raw features (:class:`Affine`), so the saved pipeline scores the aligned
rows unchanged (:func:`apply_affine`, Arrow batches in Spark). Moments come from MLlib's Summarizer and
Correlation (:func:`feature_moments`); only D-vectors and a D x D matrix reach the driver.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.ml import PipelineModel
    from pyspark.sql import DataFrame

__all__ = ["Affine", "Moments", "adabn_map", "apply_affine", "coral_map", "feature_moments", "scaler_statistics"]


@dataclass(frozen=True)
class Moments:
    """Per-feature mean and (sample) standard deviation, the covariance when asked for, and the rows."""

    mean: np.ndarray
    std: np.ndarray
    cov: np.ndarray | None
    rows: int


@dataclass(frozen=True)
class Affine:
    """``x' = x @ matrix + shift`` (``matrix`` D x D), or ``x * scale + shift`` when ``matrix`` is None."""

    shift: np.ndarray
    scale: np.ndarray | None = None
    matrix: np.ndarray | None = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = x @ self.matrix if self.matrix is not None else x * self.scale
        return np.asarray(out + self.shift)


def scaler_statistics(model: "PipelineModel") -> tuple[np.ndarray, np.ndarray] | None:
    """The mean and std of the first ``StandardScalerModel`` in a saved pipeline (None without one)."""
    from pyspark.ml.feature import StandardScalerModel

    for stage in model.stages:
        if isinstance(stage, StandardScalerModel):
            return stage.mean.toArray(), stage.std.toArray()
    return None


def feature_moments(frame: "DataFrame", covariance: bool) -> Moments:
    """Mean, sample sd and (optionally) covariance of the ``features`` column, computed by MLlib.

    Parameters
    ----------
    frame : DataFrame
        Has ``features`` (``array<float>``).
    covariance : bool
        Also the D x D covariance (from Pearson correlations; a constant feature's row and column are 0).

    Returns
    -------
    Moments
    """
    from pyspark.ml.functions import array_to_vector
    from pyspark.ml.stat import Correlation, Summarizer
    from pyspark.sql import functions as F

    vectors = frame.select(array_to_vector(F.col("features")).alias("v"))
    row = vectors.select(Summarizer.metrics("mean", "variance", "count").summary(F.col("v")).alias("s")).first()
    assert row is not None
    mean, var = row["s"]["mean"].toArray(), row["s"]["variance"].toArray()
    std = np.sqrt(np.maximum(var, 0.0))
    cov = None
    if covariance:
        corr = Correlation.corr(vectors, "v").first()
        assert corr is not None
        matrix = np.nan_to_num(corr[0].toArray(), nan=0.0)
        cov = matrix * std[:, None] * std[None, :]
        np.fill_diagonal(cov, var)
    return Moments(mean, std, cov, int(row["s"]["count"]))


def _inverse(std: np.ndarray) -> np.ndarray:
    return np.divide(1.0, std, out=np.zeros_like(std, dtype=float), where=std > 0)


def adabn_map(model_mean: np.ndarray, model_std: np.ndarray, target: Moments) -> Affine:
    """v2 standardised by its own moments, in the model's raw scale: ``x' = mu_m + sd_m (x - mu_t) / sd_t``.

    A feature constant in v2 maps to the model's mean.
    """
    scale = model_std * _inverse(target.std)
    return Affine(shift=model_mean - target.mean * scale, scale=scale)


def _sqrt_and_inverse_sqrt(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    values, vectors = np.linalg.eigh((cov + cov.T) / 2.0)
    values = np.maximum(values, 1e-12)
    return (vectors * np.sqrt(values)) @ vectors.T, (vectors / np.sqrt(values)) @ vectors.T


def coral_map(model_mean: np.ndarray, model_std: np.ndarray, source: Moments, target: Moments,
              shrinkage: float) -> Affine:
    """CORAL in the model's standardised space, as an affine map of raw features.

    Parameters
    ----------
    model_mean, model_std : numpy.ndarray
        The model's scaler (:func:`scaler_statistics`).
    source, target : Moments
        val's and v2's moments, with covariances.
    shrinkage : float
        lambda, added to both standardised covariances' diagonals.

    Returns
    -------
    Affine
        ``x' = x @ matrix + shift``.
    """
    assert source.cov is not None and target.cov is not None
    inv = _inverse(model_std)
    eye = np.eye(len(inv))
    c_s = source.cov * inv[:, None] * inv[None, :] + shrinkage * eye
    c_t = target.cov * inv[:, None] * inv[None, :] + shrinkage * eye
    m_s, m_t = (source.mean - model_mean) * inv, (target.mean - model_mean) * inv
    root_s, _ = _sqrt_and_inverse_sqrt(c_s)
    _, inverse_root_t = _sqrt_and_inverse_sqrt(c_t)
    recolour = inverse_root_t @ root_s
    # x' = mu_m + sd_m * ((z - m_t) R + m_s) with z = (x - mu_m) * inv
    matrix = inv[:, None] * recolour * model_std[None, :]
    shift = model_mean + model_std * (m_s - m_t @ recolour) - (model_mean * inv) @ recolour * model_std
    return Affine(shift=shift, matrix=matrix)


def _batches(batches: Iterator["pa.RecordBatch"], affine: Affine) -> Iterator["pa.RecordBatch"]:
    import pyarrow as pa

    for batch in batches:
        features = batch.column("features")
        n = len(features)
        values = features.flatten().to_numpy(zero_copy_only=False).astype(np.float64)
        x = values.reshape(n, -1) if n else np.zeros((0, len(affine.shift)))
        aligned = affine(x).astype(np.float32)
        column = pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int32) * aligned.shape[1]),
                                          pa.array(aligned.ravel()))
        yield pa.RecordBatch.from_arrays([batch.column("row_id"), batch.column("label"), column],
                                         ["row_id", "label", "features"])


def apply_affine(frame: "DataFrame", affine: Affine) -> "DataFrame":
    """``row_id, label, features`` with ``features`` replaced by ``affine(features)`` (float32, Arrow batches).

    Parameters
    ----------
    frame : DataFrame
        Dataset rows; every ``features`` array has length D.
    affine : Affine

    Returns
    -------
    DataFrame
    """
    from pyspark.sql import functions as F

    rows = frame.select(F.col("row_id").cast("long"), F.col("label").cast("int"),
                        F.col("features").cast("array<float>"))
    return rows.mapInArrow(lambda batches: _batches(batches, affine), "row_id long, label int, features array<float>")

"""scikit-learn's converged multinomial LR on the same rows and objective as MLlib (the oracle of the benchmarks).

MLlib minimises mean log-loss + regParam/2 ||w||^2 on features standardised with the sample standard
deviation, the intercepts unpenalised; scikit-learn minimises C sum log-loss + 1/2 ||w||^2, so
C = 1 / (regParam n) on the same standardised rows is the same function (up to the factor C n).
"""
from __future__ import annotations

import json
import os
import time
import warnings

import numpy as np


def standardise(x_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = x_train.astype(np.float64)
    return x.mean(axis=0), x.std(axis=0, ddof=1)  # Spark's StandardScaler: sample std


def converged(x_train: np.ndarray, y_train: np.ndarray, reg: float, tol: float = 1e-6,
              max_iter: int = 5000) -> tuple[object, np.ndarray, np.ndarray, dict]:
    """The fitted model, mean and std, and its fit record (iterations, seconds, converged)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    started = time.time()
    mean, std = standardise(x_train)
    clf = LogisticRegression(C=1.0 / (reg * len(y_train)), solver="lbfgs", tol=tol, max_iter=max_iter)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        clf.fit((x_train - mean) / std, y_train)
    record = {"iterations": int(np.max(clf.n_iter_)), "seconds": round(time.time() - started, 2),
              "converged": not any(issubclass(w.category, ConvergenceWarning) for w in caught),
              "tol": tol, "reg_param": reg}
    return clf, mean, std, record


def scores(clf, mean: np.ndarray, std: np.ndarray, x: np.ndarray, y: np.ndarray) -> dict:
    """Accuracy and mean log loss of ``clf`` on ``(x, y)``, and its predictions."""
    prob = clf.predict_proba((x - mean) / std)
    full = np.zeros((len(y), int(max(clf.classes_.max(), y.max())) + 1))
    full[:, clf.classes_] = prob
    pred = full.argmax(axis=1)
    p_true = np.maximum(full[np.arange(len(y)), y], 1e-15)
    return {"accuracy": float((pred == y).mean()), "log_loss": float(-np.log(p_true).mean()),
            "predictions": pred.tolist()}


def cached_oracle(cache: str, arrays: dict, reg: float, tol: float = 1e-6) -> dict:
    """The oracle's record and its scores on select, val and v2, computed once per (dataset, reg, tol)."""
    if os.path.exists(cache):
        with open(cache, encoding="utf-8") as f:
            return json.load(f)
    x, y = arrays["train"]
    clf, mean, std, record = converged(x, y, reg, tol)
    record["scores"] = {split: scores(clf, mean, std, *arrays[split]) for split in ("select", "val", "v2")
                        if split in arrays}
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    with open(cache, "w", encoding="utf-8") as f:
        json.dump(record, f)
    return record

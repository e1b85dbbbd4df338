"""When an iterative fit stops: a budget of iterations, spent in rounds, with two rules checked between them.

MLlib's L-BFGS fits (logistic regression, the perceptron) take a ``maxIter`` and a ``tol`` and give no
hook between iterations. :func:`fit_in_rounds` therefore runs a fit as rounds of ``check_every``
iterations, each round an MLlib fit started from the previous round's model, and after each round
stops at the first of:

1. **L-BFGS converged inside the round** (it ran fewer iterations than asked): Breeze's own check with
   MLlib's ``tol`` fired; see :mod:`gap_spark.models.lr` for what it compares.
2. **The objective's relative change under tol**: ``(f_start - f_end) / |f_end|`` over the round,
   divided by the round's iterations, below ``tol``. ``f`` is MLlib's objective on the rows being fitted
   (mean log loss plus the penalty), so the rule reads the same at every scale and needs no held-out data.
3. **No gain on the selection slice for ``patience`` rounds** (0 turns it off): the log loss on
   ``split=select`` did not fall below its best for that many rounds in a row. The model kept is then
   the best round's, not the last.
4. **The budget**: ``max_iter`` iterations in all.

The first round always runs in full on the rows given: a warm start (a model from a sample) is a place
to start from, never a model to stop at. Each round after the first costs MLlib's one-off passes
again (statistics, blocks, the first evaluation), so rounds are long enough that the check is cheap
beside them.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["RoundFit", "RoundsResult", "Scorer", "StopRule", "fit_in_rounds", "relative_change"]

log = logging.getLogger(__name__)

# One round: (model to start from or None, iterations) -> (model, its objective history, iterations run).
RoundFit = Callable[[Any, int], tuple[Any, list[float], int]]
# The selection slice's metrics of a model ({"rows", "accuracy", "log_loss"}), or None without a slice.
Scorer = Callable[[Any], dict[str, Any]] | None


@dataclass(frozen=True)
class StopRule:
    """The budget and the rules of :func:`fit_in_rounds` (``train.lr.*`` or ``train.mlp.*``)."""

    budget: int  # most iterations in all (max_iter)
    check_every: int  # iterations per round
    tol: float  # relative change of the objective per iteration
    patience: int  # rounds without a lower log loss on the selection slice; 0 = off

    def as_dict(self) -> dict[str, Any]:
        return {"max_iter": self.budget, "check_every": self.check_every, "tol": self.tol, "patience": self.patience}


@dataclass(frozen=True)
class RoundsResult:
    """The kept model and what the summary records about how it got there."""

    model: Any
    iterations: int  # iterations up to the kept model
    objective_history: list[float]  # f at the start, then after every iteration up to the kept model
    stopped: str  # converged | objective | selection | budget
    rounds: list[dict[str, Any]] = field(default_factory=list)
    selection: dict[str, Any] | None = None  # the kept model's metrics on the selection slice


def relative_change(history: list[float]) -> float:
    """The objective's relative fall per iteration over ``history`` (inf with fewer than two values).

    Parameters
    ----------
    history : list of float
        The objective at the start and after each iteration.

    Returns
    -------
    float
        ``(history[0] - history[-1]) / max(|history[-1]|, 1e-12) / (len(history) - 1)``.
    """
    if len(history) < 2:
        return math.inf
    return (history[0] - history[-1]) / max(abs(history[-1]), 1e-12) / (len(history) - 1)


def _stop_reason(rule: StopRule, asked: int, ran: int, change: float, since_best: int | None,
                 done: int) -> str | None:
    if ran < asked:
        return "converged"
    if change < rule.tol:
        return "objective"
    if since_best is not None and rule.patience and since_best >= rule.patience:
        return "selection"
    if done >= rule.budget:
        return "budget"
    return None


def fit_in_rounds(fit_round: RoundFit, rule: StopRule, score: Scorer = None, initial: Any = None,
                  label: str = "fit") -> RoundsResult:
    """Fit in rounds until a rule of :class:`StopRule` says stop (see the module docstring).

    Parameters
    ----------
    fit_round : callable
        ``(start_model or None, iterations) -> (model, objective_history, iterations_run)``; the
        history starts with the objective at the starting point.
    rule : StopRule
    score : callable or None
        The selection slice's metrics of a model; None turns the patience rule off.
    initial : model or None
        Where the first round starts (a warm start); None: the fit's own start.
    label : str
        For the log lines.

    Returns
    -------
    RoundsResult
    """
    done, start = 0, initial
    history: list[float] = []
    rounds: list[dict[str, Any]] = []
    # The best round on the selection slice: (log loss, model, iterations, history length, metrics).
    best: tuple[float, Any, int, int, dict[str, Any] | None] | None = None
    since_best: int | None = None
    while True:
        asked = min(rule.check_every, max(0, rule.budget - done)) if rule.budget else 0
        t0 = time.time()
        model, round_history, ran = fit_round(start, asked)
        done += ran
        history.extend(round_history if not history else round_history[1:])
        change = relative_change(round_history)
        metrics = score(model) if score is not None else None
        entry: dict[str, Any] = {"iterations": ran, "objective": round_history[-1] if round_history else None,
                 "relative_change": change if math.isfinite(change) else None, "seconds": round(time.time() - t0, 3)}
        if metrics is not None:
            entry["select"] = metrics
            loss = metrics.get("log_loss")
            if loss is not None and (best is None or loss < best[0]):
                best, since_best = (loss, model, done, len(history), metrics), 0
            elif since_best is not None:
                since_best += 1
        rounds.append(entry)
        log.info("%s: round %d: %d iterations (%d in all), objective %s, relative change %.3g per iteration%s",
                 label, len(rounds), ran, done, f"{entry['objective']:.6f}" if entry["objective"] is not None else "-",
                 change, _describe(metrics))
        reason = _stop_reason(rule, asked, ran, change, since_best, done)
        if reason is not None or asked == 0:
            break
        start = model
    reason = reason or "budget"
    if reason == "selection" and best is not None:
        _, model, done, length, metrics = best
        history = history[:length]
    log.info("%s: stopped (%s) after %d iterations in %d rounds", label, reason, done, len(rounds))
    return RoundsResult(model=model, iterations=done, objective_history=history, stopped=reason, rounds=rounds,
                        selection=metrics)


def _describe(metrics: dict[str, Any] | None) -> str:
    if not metrics or metrics.get("accuracy") is None:
        return ""
    loss = metrics.get("log_loss")
    return (f"; selection slice: accuracy {metrics['accuracy']:.4f}"
            + (f", log loss {loss:.4f}" if loss is not None else ""))

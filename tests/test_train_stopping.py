"""The stopping rules of iterative fits (models/stopping.py), on scripted objective curves: no Spark."""
from __future__ import annotations

import math

import pytest

from gap_spark.models.stopping import StopRule, fit_in_rounds, relative_change


class ScriptedFit:
    """A fake ``fit_round``: the objective after iteration i is ``curve(i)``; the "model" is the iteration
    count it reached, so the tests can see which model was kept. ``stop_at`` mimics L-BFGS converging."""

    def __init__(self, curve, stop_at: int | None = None):
        self.curve, self.stop_at, self.calls = curve, stop_at, []

    def __call__(self, start, iterations):
        first = 0 if start is None else start
        last = first + iterations
        if self.stop_at is not None:
            last = min(last, max(first, self.stop_at))
        self.calls.append((start, iterations))
        return last, [self.curve(i) for i in range(first, last + 1)], last - first


def test_relative_change_is_per_iteration_and_relative_to_the_end():
    assert relative_change([2.0, 1.5, 1.0]) == pytest.approx(0.5)  # fell by 1.0, relative to 1.0, over 2
    assert relative_change([1.0]) == math.inf and relative_change([]) == math.inf
    assert relative_change([1.0, 1.0]) == 0.0


def test_stops_when_the_objective_settles_not_at_the_budget():
    fit = ScriptedFit(lambda i: 1.0 + 10.0 * 0.5 ** i)  # relative change per iteration halves every iteration
    result = fit_in_rounds(fit, StopRule(budget=200, check_every=5, tol=1e-3, patience=0))
    assert result.stopped == "objective"
    assert 5 < result.iterations < 200 and result.iterations % 5 == 0
    assert relative_change(fit(result.iterations - 5, 5)[1]) < 1e-3 <= relative_change(
        fit(result.iterations - 10, 5)[1])
    # Rounds chain: each starts where the previous ended; the history has no duplicated joints.
    assert [c[0] for c in fit.calls[:3]] == [None, 5, 10]
    assert len(result.objective_history) == result.iterations + 1
    assert [r["iterations"] for r in result.rounds] == [5] * len(result.rounds)


def test_the_budget_is_a_ceiling():
    fit = ScriptedFit(lambda i: 1.0 / (1 + i))  # never settles under tol 1e-9
    result = fit_in_rounds(fit, StopRule(budget=12, check_every=5, tol=1e-9, patience=0))
    assert (result.stopped, result.iterations) == ("budget", 12)
    assert [c[1] for c in fit.calls] == [5, 5, 2]


def test_lbfgs_converging_inside_a_round_ends_the_fit():
    fit = ScriptedFit(lambda i: 1.0 / (1 + i), stop_at=7)
    result = fit_in_rounds(fit, StopRule(budget=100, check_every=5, tol=0.0, patience=0))
    assert (result.stopped, result.iterations, result.model) == ("converged", 7, 7)


def test_no_gain_on_the_selection_slice_keeps_the_best_round():
    select_loss = {5: 0.9, 10: 0.7, 15: 0.75, 20: 0.8, 25: 0.6}  # best after round 2, worse twice in a row
    fit = ScriptedFit(lambda i: 1.0 / (1 + i))
    result = fit_in_rounds(fit, StopRule(budget=100, check_every=5, tol=0.0, patience=2),
                           score=lambda model: {"rows": 10, "accuracy": 0.5, "log_loss": select_loss[model]})
    assert result.stopped == "selection"
    assert (result.model, result.iterations) == (10, 10)  # the best round, not the last
    assert len(result.objective_history) == 11 and result.selection["log_loss"] == 0.7
    assert len(result.rounds) == 4 and result.rounds[-1]["select"]["log_loss"] == 0.8
    # patience 0 ignores the slice.
    off = fit_in_rounds(ScriptedFit(lambda i: 1.0 / (1 + i)), StopRule(budget=25, check_every=5, tol=0.0, patience=0),
                        score=lambda model: {"rows": 10, "accuracy": 0.5, "log_loss": select_loss[model]})
    assert (off.stopped, off.iterations) == ("budget", 25)


def test_a_warm_start_is_where_the_first_round_starts_never_where_it_stops():
    fit = ScriptedFit(lambda i: 1.0 + 0.5 ** i)
    result = fit_in_rounds(fit, StopRule(budget=50, check_every=5, tol=1.0, patience=1), initial=30,
                           score=lambda model: {"rows": 1, "accuracy": 1.0, "log_loss": 0.1})
    assert fit.calls[0] == (30, 5)  # the first round runs in full from the warm model
    assert result.model == 35 and result.iterations == 5

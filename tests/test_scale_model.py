"""The scale model's fit (numpy only, no Spark): it recovers known parts and predicts the held-out point."""
from __future__ import annotations

import numpy as np

from benchmarks.scale_model import (
    PARTS,
    STAGES,
    StageModel,
    cluster_predictions,
    fit_all,
    fit_stage,
    memory_plan,
    nnls,
    validation,
)


def test_fit_recovers_fixed_serial_and_parallel_parts():
    truth = StageModel(fixed=12.0, serial=2e-4, parallel=3e-3)
    pts = [(n, c, truth.predict(n, c)) for n in (6_000, 12_000, 24_000) for c in (1, 2)]
    got = fit_stage(pts)
    assert np.allclose([got.fixed, got.serial, got.parallel], [12.0, 2e-4, 3e-3], rtol=1e-6)


def test_three_points_predict_the_fourth():
    truth = StageModel(fixed=5.0, serial=1e-4, parallel=4e-3)
    fit_on = [(6_000, 2, truth.predict(6_000, 2)), (12_000, 2, truth.predict(12_000, 2)),
              (6_000, 1, truth.predict(6_000, 1))]
    assert abs(fit_stage(fit_on).predict(12_000, 1) - truth.predict(12_000, 1)) < 1e-6


def test_parts_stay_non_negative_under_noise():
    # a stage that is all fixed cost plus noise: no negative per-row part may come out
    pts = [(6_000, 2, 10.3), (12_000, 2, 9.8), (6_000, 1, 10.1), (12_000, 1, 10.0)]
    got = fit_stage(pts)
    assert min(got.fixed, got.serial, got.parallel) >= 0
    assert abs(got.fixed - 10.05) < 0.3
    a = np.array([[1.0, -1.0], [1.0, 1.0]])
    assert np.all(nnls(a, np.array([-1.0, 1.0])) >= 0)


def _fake_measurement(scale: float, cores: int, truth: dict[str, StageModel]) -> dict:
    train, test, iters = round(1_281_167 * scale), round(60_000 * scale * 5), 10
    rows = {"train_csv": train, "train": train * 0.98, "test": test}
    basis = {p: rows["train" if p.startswith("train") else "test" if p != "ingest" else "train_csv"] for p in truth}
    t = {p: m.predict(basis[p] * (iters if p == "train: lr iterations" else 1) * (p != "report"), cores)
         for p, m in truth.items()}
    stages = {s: {"seconds": t[s]} for s in STAGES if s != "train"}
    train_parts = ("train: start + cache", "train: lr iterations", "train: lr other", "train: rf")
    stages["train"] = {"seconds": sum(t[p] for p in train_parts)}
    return {"scale": scale, "cores": cores,
            "rows": {"train": train * 0.98, "select": train * 0.02, "val": test * 5 / 6, "v2": test / 6},
            "stages": stages,
            "models": {"lr": {"iterations": iters,
                              "seconds": {"features": t["train: lr other"], "fit": t["train: lr iterations"]}},
                       "rf": {"seconds": {"fit": t["train: rf"]}}}}


def test_validation_and_predictions_from_synthetic_measurements():
    truth = {p: StageModel(fixed=8.0 + i, serial=1e-5 * (i % 3), parallel=2e-4 * (i + 1)) for i, p in enumerate(PARTS)}
    truth["report"] = StageModel(3.0, 0.0, 0.0)
    ms = [_fake_measurement(s, c, truth) for s in (0.005, 0.01) for c in (2, 1)]
    check = validation(ms)
    assert check and all(abs(r["error_pct"]) < 0.5 for r in check)
    models = fit_all(ms)
    table = cluster_predictions(models)
    assert len(table) == 6
    for big, small in zip(table[3:], table[:3]):  # 21k-sized data takes longer than 1k on the same cores
        assert big["train"] > small["train"]
    assert table[0]["train"] > table[2]["train"]  # more cores, less time
    assert memory_plan()[0]["lr_blocks_gb_total"] > 9


def test_one_core_count_counts_the_per_row_part_as_serial():
    got = fit_stage([(1_500, 2, 98.0), (60_000, 2, 111.0)])
    assert not got.cores_varied and got.parallel == 0
    assert abs(got.predict(60_000, 128) - 111.0) < 1e-6  # no speed-up claimed for what was not measured


def test_four_terms_recover_a_start_up_cost_that_shares_the_cores():
    truth = StageModel(fixed=10.0, serial=1e-4, parallel=2e-3, fixed_parallel=20.0)
    pts = [(n, c, truth.predict(n, c)) for n in (6_000, 12_000, 1_250_000) for c in (1, 2)]
    got = fit_stage(pts, terms=4)
    assert np.allclose([got.fixed, got.fixed_parallel, got.serial, got.parallel], [10.0, 20.0, 1e-4, 2e-3], rtol=1e-5)

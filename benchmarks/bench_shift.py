"""Benchmark: the shift stage's per-feature statistics (moments, SMD, KS, W1) over val+v2 and a train sample.

Two comparisons are timed, as `gap-spark shift` runs them (gap_spark.ops.drift_spark.feature_shift_stats: two
mapInArrow passes, a histogram sketch on a fixed grid):

- val vs v2 (full size: 50,000 + 10,000 rows x 1024);
- a 10% train sample vs val (full size: 128,117 + 50,000 rows x 1024).

The data come from gap_spark.ops.generator, written as a dataset by benchmarks.common.generated_dataset (in
--work, default a temporary directory), so Spark reads files as it does in the stage; with --data it reads an
existing dataset and samples train itself. In the same
run, the baseline collects the same rows into one process and computes the same statistics with numpy
and scipy (scipy.stats.ks_2samp and wasserstein_distance, feature by feature); the script prints both
times, the ratio, and the largest KS/W1 differences from scipy next to the sketch's stated bounds.

    python -m benchmarks.bench_shift                 # modest default: 1/5 of the full sizes
    python -m benchmarks.bench_shift --full          # 60k x 1024 and a 128k-row train sample
    python -m benchmarks.bench_shift --data data/dataset --train-fraction 0.1
    python -m benchmarks.bench_shift --percentile-approx   # also time the SQL quantile route
"""
from __future__ import annotations

import os
import shutil
import sys
import time
from typing import Any

import numpy as np

from benchmarks.common import (
    add_shape_args,
    add_spark_args,
    add_work_arg,
    bench_config,
    bench_parser,
    dump,
    generated_dataset,
    machine,
    print_table,
    spark_session,
    work_dir,
)

FULL = {"val": 50_000, "v2": 10_000, "train": 128_117}


def to_numpy(frame, dim: int) -> np.ndarray:
    """Collect a frame's features into one (rows x dim) float32 matrix (the baseline's input)."""
    table = frame.select("features").toArrow()
    column = table.column("features").combine_chunks()
    return column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), dim)


def baseline(a: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
    """Means, sds, SMD, exact KS and W1 per feature with numpy and scipy."""
    from scipy.stats import ks_2samp, wasserstein_distance

    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    mean_a, mean_b = a64.mean(axis=0), b64.mean(axis=0)
    std_a, std_b = a64.std(axis=0, ddof=1), b64.std(axis=0, ddof=1)
    ks = np.empty(a.shape[1])
    w1 = np.empty(a.shape[1])
    for f in range(a.shape[1]):
        ks[f] = ks_2samp(a64[:, f], b64[:, f]).statistic
        w1[f] = wasserstein_distance(a64[:, f], b64[:, f])
    smd = (mean_b - mean_a) / np.sqrt((std_a ** 2 + std_b ** 2) / 2)
    return {"mean_a": mean_a, "std_a": std_a, "std_b": std_b, "smd": smd, "ks": ks, "wasserstein": w1}


def percentile_approx_route(frames: dict, pair: tuple[str, str], grid: int, accuracy: int) -> None:
    """The quantile-sketch alternative (posexplode + percentile_approx by set and feature), for timing only."""
    from pyspark.sql import functions as F

    a, b = pair
    tagged = frames[a].select(F.lit(a).alias("set"), "features").unionByName(
        frames[b].select(F.lit(b).alias("set"), "features"))
    probabilities = [i / grid for i in range(grid + 1)]
    (tagged.select("set", F.posexplode("features").alias("feature", "value"))
     .groupBy("set", "feature").agg(F.percentile_approx("value", probabilities, accuracy).alias("q")).collect())


def main(argv=None) -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--full", action="store_true", help="the real sizes: 50k/10k val/v2, a 128k train sample")
    parser.add_argument("--scale", type=float, default=0.2, help="fraction of the full sizes (default 0.2)")
    add_shape_args(parser, seed=13)
    parser.add_argument("--bins", type=int, default=1000, help="shift.histogram_bins")
    parser.add_argument("--range-sd", type=float, default=5.0, help="shift.histogram_range_sd")
    parser.add_argument("--data", help="an existing dataset (DATA_DIR) instead of generated data")
    parser.add_argument("--train-fraction", type=float, default=0.1, help="train sample fraction with --data")
    add_spark_args(parser)
    add_work_arg(parser, None, "generated dataset")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--percentile-approx", action="store_true",
                        help="also time Spark SQL percentile_approx over the exploded val+v2 (slow)")
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args(argv)

    from gap_spark.contracts.dataset import read_dataset
    from gap_spark.ops.drift_spark import feature_shift_stats

    spark = spark_session(bench_config(cores=args.cores, driver_memory=args.driver_memory), "bench_shift")

    scratch = None
    if args.data:
        splits, manifest = read_dataset(spark, args.data)
        dim = int(manifest["dim"])
        frames = {"val": splits["val"], "v2": splits["v2"],
                  "train": splits["train"].sample(False, args.train_fraction, seed=args.seed)}
        source = f"dataset {args.data} (train sample fraction {args.train_fraction})"
    else:
        scale = 1.0 if args.full else args.scale
        rows = {split: max(1, round(n * scale)) for split, n in FULL.items()}
        dim = args.dim
        root = work_dir(args.work, "bench_shift_")
        scratch = None if args.work else root  # a temporary directory is removed at the end
        data = generated_dataset(root, rows, dim=dim, classes=args.classes, seed=args.seed)
        frames, _ = read_dataset(spark, data.data_dir, ("train", "val", "v2"))
        source = f"generated, scale {scale}"

    print(f"machine: {machine()}, local[{args.cores}], load average {os.getloadavg()[0]:.1f}; data: {source}")
    # Warm up (Python workers, imports, JIT) on a few rows, so the timings below are of warm runs.
    started = time.perf_counter()
    feature_shift_stats({k: frames[k].limit(500) for k in ("val", "v2")}, [("warm", "val", "v2")], dim,
                        args.bins, args.range_sd).toPandas()
    print(f"warm-up on 500 + 500 rows: {time.perf_counter() - started:.1f} s", flush=True)
    results = []
    try:
        for pair in (("val", "v2"), ("train", "val")):
            name = f"{pair[0]}_{pair[1]}"
            if pair[0] == "train":
                # The stage persists the train sample (it reads it three times); do the same, and time it apart.
                started = time.perf_counter()
                frames["train"] = frames["train"].persist()
                n_train = frames["train"].count()
                print(f"train sample: {n_train} rows cached in {time.perf_counter() - started:.1f} s")
            started = time.perf_counter()
            table: Any = feature_shift_stats({k: frames[k] for k in pair}, [(name, *pair)], dim, args.bins,
                                             args.range_sd).toPandas()
            stats = table.sort_values("feature")
            spark_seconds = time.perf_counter() - started
            row: dict[str, Any] = {
                   "pair": name, "rows_a": int(stats["n_a"].iloc[0]), "rows_b": int(stats["n_b"].iloc[0]),
                   "dim": dim, "spark_s": spark_seconds,
                   "ks_bound_max": float(stats["ks_error_bound"].max()),
                   "w1_bound_max_sd": float((stats["wasserstein_error_bound"]
                                             / np.sqrt((stats["std_a"] ** 2 + stats["std_b"] ** 2) / 2)).max())}
            print(f"{name}: spark {spark_seconds:.1f} s for {row['rows_a']} + {row['rows_b']} rows x {dim}",
                  flush=True)
            if not args.no_baseline:
                started = time.perf_counter()
                a, b = to_numpy(frames[pair[0]], dim), to_numpy(frames[pair[1]], dim)
                row["collect_s"] = time.perf_counter() - started
                started = time.perf_counter()
                expected = baseline(a, b)
                row["baseline_s"] = time.perf_counter() - started
                row["ratio"] = spark_seconds / row["baseline_s"]
                row["ks_diff_max"] = float(np.max(np.abs(expected["ks"] - stats["ks"].to_numpy())))
                row["w1_diff_max_sd"] = float(np.max(np.abs(expected["wasserstein"] - stats["wasserstein"].to_numpy())
                                                     / np.sqrt((expected["std_a"] ** 2 + expected["std_b"] ** 2) / 2)))
                row["smd_diff_max"] = float(np.max(np.abs(expected["smd"] - stats["smd"].to_numpy())))
                print(f"{name}: numpy/scipy {row['baseline_s']:.1f} s (+{row['collect_s']:.1f} s to collect), "
                      f"spark/baseline {row['ratio']:.2f}", flush=True)
            if args.percentile_approx and pair == ("val", "v2"):
                started = time.perf_counter()
                percentile_approx_route(frames, pair, grid=200, accuracy=1000)
                row["percentile_approx_s"] = time.perf_counter() - started
                print(f"{name}: percentile_approx route {row['percentile_approx_s']:.1f} s", flush=True)
            results.append(row)
            if pair[0] == "train":
                frames["train"].unpersist()
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)

    print()
    columns = ["pair", "rows_a", "rows_b", "dim", "spark_s", "baseline_s", "ratio", "collect_s", "ks_diff_max",
               "ks_bound_max", "w1_diff_max_sd", "w1_bound_max_sd", "smd_diff_max", "percentile_approx_s"]
    print_table(results, [c for c in columns if any(c in r for r in results)])
    if args.json:
        dump(args.json, {"machine": machine(), "source": source, "bins": args.bins, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Evaluation at two sizes: time per set, and the driver's peak memory, which must not grow with rows.

A 1000-class LR (the production feature pipeline: array -> vector -> standardise -> LR) is fitted once
on a small generated train split. Then ``run_evaluate`` runs on a generated dataset of ``--sizes``
rows (val : v2 = 5 : 1, as in ImageNet-val against ImageNetV2), each size in a fresh process with its
own SparkSession, so each peak belongs to one size. Memory is sampled with psutil every 50 ms:
the Python driver (where a ``collect`` of predictions would land) and the Spark JVM (in local mode
it is the driver and the executors together, so it does grow with the work it caches). The first
size is the baseline; the ratios of time and memory are printed against it.

    python -m benchmarks.bench_evaluate                       # 6k and 24k rows, D=1024, K=1000
    python -m benchmarks.bench_evaluate --sizes 12000,60000   # the full-scale test-set size
    python -m benchmarks.bench_evaluate --dim 256 --classes 200 --sizes 5000,20000   # quick
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import threading
import time

import psutil

from benchmarks.common import (
    RESULTS,
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
from gap_spark.core import fs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fit_model(data_dir: str, run_dir: str, max_iter: int, cores: int, driver_memory: str) -> float:
    """Fit and save RUN/models/lr with the production feature stages; returns the fit seconds."""
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression

    from gap_spark.contracts.dataset import read_split
    from gap_spark.ops.features import feature_stages, output_column

    spark = spark_session(bench_config(cores=cores, driver_memory=driver_memory), "bench-evaluate-fit")
    train = read_split(spark, data_dir, "train").cache()
    started = time.time()
    lr = LogisticRegression(featuresCol=output_column(None), maxIter=max_iter, regParam=1e-4)
    model = Pipeline(stages=[*feature_stages(None), lr]).fit(train)
    seconds = time.time() - started
    model.write().overwrite().save(fs.to_spark_uri(os.path.join(run_dir, "models", "lr")))
    spark.stop()
    return seconds


class PeakSampler(threading.Thread):
    """Samples the RSS of this process and of its child processes (the Spark JVM and Python workers)."""

    def __init__(self, interval: float = 0.05):
        super().__init__(daemon=True)
        self.interval = interval
        self.python_peak = 0
        self.children_peak = 0
        self._halt = threading.Event()

    def run(self) -> None:
        me = psutil.Process()
        while not self._halt.is_set():
            self.python_peak = max(self.python_peak, me.memory_info().rss)
            total = 0
            for child in me.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    total += child.memory_info().rss
            self.children_peak = max(self.children_peak, total)
            time.sleep(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def worker(args: argparse.Namespace) -> None:
    """One size in its own process: start Spark, load, evaluate, report timings and memory as JSON."""
    from gap_spark.contracts.paths import Paths
    from gap_spark.stages.evaluate import run_evaluate

    config = bench_config(sets=[f"paths.data={args.data}", f"paths.run={args.run}",
                                f"evaluate.bootstrap_replicates={args.replicates}"],
                          cores=args.cores, driver_memory=args.driver_memory)
    spark = spark_session(config, "bench-evaluate")
    spark.range(10).count()  # JVM and Spark fully up before the baseline reading
    before = psutil.Process().memory_info().rss
    sampler = PeakSampler()
    sampler.start()
    started = time.time()
    summary = run_evaluate(spark, config, Paths.from_config(config))
    seconds = time.time() - started
    sampler.stop()
    timing = summary["timings"]["lr"]
    lr = summary["models"]["lr"]
    print("RESULT " + json.dumps({
        "seconds": seconds, "val_s": timing["val"], "v2_s": timing["v2"], "bootstrap_s": timing["bootstrap"],
        "tables_s": timing["tables"], "val_rows": lr["val"]["rows"], "v2_rows": lr["v2"]["rows"],
        "accuracy_val": lr["val"]["accuracy"], "accuracy_v2": lr["v2"]["accuracy"], "gap": lr["gap"]["accuracy"],
        "gap_ci95": lr["gap"]["ci95"],
        "python_before_mb": before / 2**20, "python_peak_mb": sampler.python_peak / 2**20,
        "python_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "jvm_peak_mb": sampler.children_peak / 2**20}), flush=True)
    spark.stop()


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--sizes", default="6000,24000", help="comma-separated evaluated rows (val + v2)")
    add_shape_args(parser)
    parser.add_argument("--train-per-class", type=int, default=3, help="rows per class to fit the model on")
    parser.add_argument("--max-iter", type=int, default=10, help="LR iterations (timing needs a model, not a good one)")
    parser.add_argument("--replicates", type=int, default=200, help="bootstrap replicates B")
    add_spark_args(parser, cores=0, driver_memory="4g")
    add_work_arg(parser, None, "data and model")
    parser.add_argument("--out", default=os.path.join(RESULTS, "evaluate.json"))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--run", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    sizes = [int(s) for s in args.sizes.split(",")]
    work = work_dir(args.work, "bench-evaluate-")
    shape = {"dim": args.dim, "classes": args.classes, "seed": args.seed, "superclass_size": min(10, args.classes)}
    run_dir = os.path.join(work, "run")
    if not os.path.exists(os.path.join(run_dir, "models", "lr")):
        train_rows = args.train_per_class * args.classes
        train = generated_dataset(os.path.join(work, "data"), {"train": train_rows}, **shape)
        fit_s = fit_model(train.data_dir, run_dir, args.max_iter, args.cores, args.driver_memory)
        print(f"model: LR on {train_rows} rows x {args.dim} features x {args.classes} classes, "
              f"{args.max_iter} iterations, fitted in {fit_s:.1f} s", flush=True)

    results = []
    for size in sizes:
        v2_rows = max(1, size // 6)
        data_dir = generated_dataset(os.path.join(work, "data"), {"val": size - v2_rows, "v2": v2_rows},
                                     **shape).data_dir
        cmd = [sys.executable, "-m", "benchmarks.bench_evaluate", "--worker", "--data", data_dir,
               "--run", os.path.join(work, f"run-{size}"), "--replicates", str(args.replicates),
               "--driver-memory", args.driver_memory, "--cores", str(args.cores)]
        # Each size evaluates the same saved model from its own run directory.
        models = os.path.join(work, f"run-{size}", "models")
        if not os.path.exists(models):
            os.makedirs(os.path.dirname(models), exist_ok=True)
            os.symlink(os.path.join(run_dir, "models"), models)
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
        if out.returncode != 0 or line is None:
            print(out.stdout[-3000:], out.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"worker for {size} rows failed (exit {out.returncode})")
        result = {"rows": size, **json.loads(line[len("RESULT "):])}
        results.append(result)
        print(f"{size} rows: {result['seconds']:.1f} s, python peak {result['python_peak_mb']:.0f} MB, "
              f"JVM peak {result['jvm_peak_mb']:.0f} MB", flush=True)

    base = results[0]
    for r in results:
        r["rows_x"] = r["rows"] / base["rows"]
        r["time_x"] = r["seconds"] / base["seconds"]
        r["python_peak_x"] = r["python_peak_mb"] / base["python_peak_mb"]
        r["python_growth_mb"] = r["python_peak_mb"] - r["python_before_mb"]
    print(f"\nrun_evaluate, LR with D={args.dim}, K={args.classes}, B={args.replicates}; "
          f"ratios against {base['rows']} rows\n")
    print_table(results, ["rows", "val_rows", "v2_rows", "val_s", "v2_s", "bootstrap_s", "tables_s", "seconds",
                          "rows_x", "time_x", "python_before_mb", "python_peak_mb", "python_growth_mb",
                          "python_peak_x", "jvm_peak_mb"])
    print("\ngap (val - v2) accuracy with its 95% interval: "
          + "; ".join(f"{r['rows']} rows: {r['gap']:.4f} [{r['gap_ci95'][0]:.4f}, {r['gap_ci95'][1]:.4f}]"
                      for r in results))
    dump(args.out, {"machine": machine(), "args": {k: v for k, v in vars(args).items() if k not in ("data", "run")},
                    "results": results})
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()

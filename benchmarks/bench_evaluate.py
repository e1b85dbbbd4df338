"""Evaluation at two sizes: time per set, and the driver's peak memory, which must not grow with rows.

A 1000-class LR (the production feature pipeline: array -> vector -> standardise -> LR) is fitted once
on a small generated train split. Then ``run_evaluate`` runs on a generated dataset of ``--sizes``
rows (val : v2 = 5 : 1, as in ImageNet-val against ImageNetV2), each size in a fresh process with its
own SparkSession, so each peak belongs to one size. Memory is sampled with psutil every 50 ms:
the Python driver (where a ``collect`` of predictions would land) and the Spark JVM (in local mode
it is the driver and the executors together, so it does grow with the work it caches). The first
size is the baseline; the ratios of time and memory are printed against it.

    python benchmarks/bench_evaluate.py                       # 6k and 24k rows, D=1024, K=1000
    python benchmarks/bench_evaluate.py --sizes 12000,60000   # the full-scale test-set size
    python benchmarks/bench_evaluate.py --dim 256 --classes 200 --sizes 5000,20000   # quick
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import contextlib

from benchmarks.common import dump, machine, print_table
from gap_spark.core import fs
from gap_spark.ops.generator import World
from gap_spark.stages.synth import synth_settings

CHUNK = 2048


def write_split(world: World, split: str, rows: int, out_dir: str, first_id: int) -> None:
    """Generated rows of one split as ``DATA/split=<split>/part-0.parquet`` (the dataset layout)."""
    folder = os.path.join(out_dir, f"split={split}")
    os.makedirs(folder, exist_ok=True)
    schema = pa.schema([pa.field("row_id", pa.int64(), False), pa.field("path", pa.string(), False),
                        pa.field("label", pa.int32(), False),
                        pa.field("features", pa.list_(pa.field("element", pa.float32(), False)), False)])
    labels_all = np.arange(rows) % world.spec.classes
    rng = np.random.default_rng([world.spec.seed, len(split), rows])
    with pq.ParquetWriter(os.path.join(folder, "part-0.parquet"), schema) as writer:
        for start in range(0, rows, CHUNK):
            labels = labels_all[start:start + CHUNK]
            x = np.ascontiguousarray(world.sample(split, labels, rng), dtype=np.float32)
            ids = np.arange(first_id + start, first_id + start + len(labels), dtype=np.int64)
            features = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), world.spec.dim)
            features = features.cast(schema.field("features").type)
            writer.write_table(pa.table({"row_id": ids, "path": [f"img/{i}.jpg" for i in ids],
                                         "label": labels.astype(np.int32), "features": features}, schema=schema))


def make_dataset(world: World, out_dir: str, rows: dict[str, int]) -> None:
    """A complete dataset (Parquet splits and a manifest) with the given rows per split."""
    first = 0
    for split, n in rows.items():
        write_split(world, split, n, out_dir, first)
        first += n
    spec = world.spec
    fs.write_json(os.path.join(out_dir, "_manifest.json"), {
        "status": "complete", "dim": spec.dim, "classes": spec.classes, "fingerprint": f"bench-{rows}",
        "splits": {s: {"rows_read": n, "rows_written": n, "rows_quarantined": 0} for s, n in rows.items()}})


def fit_model(data_dir: str, run_dir: str, max_iter: int, driver_memory: str) -> float:
    """Fit and save RUN/models/lr with the production feature stages; returns the fit seconds."""
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression

    from gap_spark.contracts.dataset import read_split
    from gap_spark.core.config import load_config
    from gap_spark.core.session import get_spark
    from gap_spark.ops.features import feature_stages, output_column

    quiet = ["spark.conf.spark.ui.enabled=false", "spark.conf.spark.ui.showConsoleProgress=false"]
    spark = get_spark(load_config(sets=[f"spark.conf.spark.driver.memory={driver_memory}", *quiet]),
                      app_name="bench-evaluate-fit")
    spark.sparkContext.setLogLevel("ERROR")
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
    from gap_spark.core.config import load_config
    from gap_spark.core.session import get_spark
    from gap_spark.stages.evaluate import run_evaluate

    config = load_config(sets=[f"paths.data={args.data}", f"paths.run={args.run}",
                               f"evaluate.bootstrap_replicates={args.replicates}",
                               f"spark.conf.spark.driver.memory={args.driver_memory}",
                               "spark.conf.spark.ui.enabled=false", "spark.conf.spark.ui.showConsoleProgress=false"])
    if args.master:
        config = config.with_overrides({"spark": {"master": args.master}})
    spark = get_spark(config, app_name="bench-evaluate")
    spark.sparkContext.setLogLevel("ERROR")
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="6000,24000", help="comma-separated evaluated rows (val + v2)")
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--train-per-class", type=int, default=3, help="rows per class to fit the model on")
    parser.add_argument("--max-iter", type=int, default=10, help="LR iterations (timing needs a model, not a good one)")
    parser.add_argument("--replicates", type=int, default=200, help="bootstrap replicates B")
    parser.add_argument("--master", default=None, help="Spark master (default: gap-spark's choice, local[*])")
    parser.add_argument("--driver-memory", default="4g")
    parser.add_argument("--workdir", default=None, help="keep data and model here (default: a temp dir)")
    parser.add_argument("--out", default="benchmarks/results/evaluate.json")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--run", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    sizes = [int(s) for s in args.sizes.split(",")]
    work = args.workdir or tempfile.mkdtemp(prefix="bench-evaluate-")
    spec = synth_settings(train_rows=1, val_rows=1, v2_rows=1, dim=args.dim, classes=args.classes,
                          superclass_size=min(10, args.classes))
    world = World(spec)
    run_dir = os.path.join(work, "run")
    train_dir = os.path.join(work, "train-data")
    if not os.path.exists(os.path.join(run_dir, "models", "lr")):
        train_rows = args.train_per_class * args.classes
        make_dataset(world, train_dir, {"train": train_rows, "val": 1, "v2": 1})
        fit_s = fit_model(train_dir, run_dir, args.max_iter, args.driver_memory)
        print(f"model: LR on {train_rows} rows x {args.dim} features x {args.classes} classes, "
              f"{args.max_iter} iterations, fitted in {fit_s:.1f} s", flush=True)

    results = []
    for size in sizes:
        v2_rows = max(1, size // 6)
        data_dir = os.path.join(work, f"data-{size}")
        if not os.path.exists(os.path.join(data_dir, "_manifest.json")):
            t0 = time.time()
            make_dataset(world, data_dir, {"train": 1, "val": size - v2_rows, "v2": v2_rows})
            print(f"data: {size} rows generated in {time.time() - t0:.1f} s", flush=True)
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--data", data_dir,
               "--run", os.path.join(work, f"run-{size}"), "--replicates", str(args.replicates),
               "--driver-memory", args.driver_memory]
        if args.master:
            cmd += ["--master", args.master]
        # Each size evaluates the same saved model from its own run directory.
        models = os.path.join(work, f"run-{size}", "models")
        if not os.path.exists(models):
            os.makedirs(os.path.dirname(models), exist_ok=True)
            os.symlink(os.path.join(run_dir, "models"), models)
        out = subprocess.run(cmd, capture_output=True, text=True)
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

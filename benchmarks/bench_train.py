"""Benchmark of the train stage: MLlib logistic regression against scikit-learn, its levers, and the forest.

What it prints (all measured in this run, on the same generated rows):

1. ``lr``: seconds per L-BFGS iteration of MLlib's multinomial LogisticRegression beside scikit-learn's
   LogisticRegression(lbfgs) on the same standardised rows and the same objective (C = 1/(regParam n)),
   and their ratio. Per-iteration cost is the difference between the longest and the shortest fit of
   the schedule divided by the difference in iterations, so the one-off passes (statistics, blocks,
   Python-side standardisation) do not count as iterations. Time to accuracy: each schedule point is a
   fresh fit with that many iterations (L-BFGS is deterministic, so it is the same iterate the long fit
   passes through); the time to accuracy is the wall time of the first schedule point whose validation
   accuracy is within 0.5 points of the longest fit's, one-off passes included.
   Then the warm start (gap-spark's default, ``models.lr.fit_lr``) beside the same warm start for
   scikit-learn (lbfgs on a stratified sample, then ``warm_start=True`` on all rows): time to the
   longest cold MLlib fit's accuracy, sample fit included, and the ratio.
2. ``--levers``: MLlib seconds per iteration (from Breeze's own per-iteration log timestamps, one fit
   per setting) against maxBlockSizeInMB, partitions per core and the storage level of the cached
   train split, plus which BLAS MLlib used (native through JNI, or the JDK Vector API path).
3. ``--rf``: random-forest fit time against bins, depth, features per node, classes, PCA width,
   partitions and rows, to see where the time goes.

Defaults (20k x 1024 x 1000 classes, schedule 2,5,10,20) take a few minutes on 2 cores; pass bigger
numbers for bigger runs. Generated rows are cached under --cache-dir between runs.

    python -m benchmarks.bench_train                       # the LR comparison
    python -m benchmarks.bench_train --levers --skip-lr    # only the levers
    python -m benchmarks.bench_train --rf --skip-lr        # only the forest study
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import warnings

import numpy as np

from benchmarks.common import (
    add_shape_args,
    add_spark_args,
    add_work_arg,
    bench_config,
    bench_parser,
    generated_dataset,
)
from benchmarks.common import spark_session as common_session


def parse_args(argv=None) -> argparse.Namespace:
    p = bench_parser(__doc__)
    p.add_argument("--rows", type=int, default=20_000, help="train rows")
    p.add_argument("--val-rows", type=int, default=5_000, help="validation rows")
    add_shape_args(p)
    p.add_argument("--reg", type=float, default=1e-4, help="MLlib regParam (sklearn C = 1/(reg n))")
    p.add_argument("--schedule", default="2,5,10,20", help="iteration counts of the fits compared")
    add_spark_args(p, driver_memory="6g")
    p.add_argument("--block-mb", type=float, default=1.0, help="maxBlockSizeInMB for the LR comparison")
    p.add_argument("--partitions", type=int, default=0, help="partitions of the cached train split (0 = cores)")
    p.add_argument("--warm-rows", type=int, default=0,
                   help="warm-start sample rows for the warm comparison (0 = a tenth of --rows, at least 5 per class)")
    p.add_argument("--warm-iters", type=int, default=10, help="iterations of the warm-start fit on the sample")
    p.add_argument("--warm-schedule", default="1,3", help="iterations on all rows after the warm start")
    p.add_argument("--skip-warm", action="store_true", help="skip the warm-start comparison")
    p.add_argument("--skip-lr", action="store_true", help="skip the LR comparison")
    p.add_argument("--skip-sklearn", action="store_true", help="LR comparison without scikit-learn")
    p.add_argument("--levers", action="store_true", help="measure maxBlockSizeInMB, partitions, storage level")
    p.add_argument("--lever-rows", type=int, default=10_000)
    p.add_argument("--lever-iters", type=int, default=6)
    p.add_argument("--lever-blocks", default="0.25,1,4,16")
    p.add_argument("--lever-partitions", default="2,4,8,16")
    p.add_argument("--lever-storage", default="NONE,MEMORY_AND_DISK,DISK_ONLY")
    p.add_argument("--rf", action="store_true", help="random-forest cost study")
    p.add_argument("--rf-rows", default="20000", help="comma-separated row counts for the forest study")
    p.add_argument("--rf-trees", type=int, default=4)
    p.add_argument("--rf-grid", default="base,bins,depth,features,classes,pca,partitions",
                   help="which forest factors to vary")
    add_work_arg(p, "/tmp/gap-spark-bench", "generated rows (cached between runs)")
    p.add_argument("--json", help="also write the results here")
    return p.parse_args(argv)


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------

def generate(rows: int, val_rows: int, dim: int, classes: int, seed: int, cache_dir: str) -> dict:
    """Train and validation rows of the generator: ``split -> (Parquet folder, features, labels)``."""
    data = generated_dataset(cache_dir, {"train": rows, "val": val_rows}, dim=dim, classes=classes, seed=seed)
    return {split: (os.path.join(data.data_dir, f"split={split}"), *data.arrays[split]) for split in ("train", "val")}


def spark_session(cores: int, memory: str):
    config = bench_config(cores=cores, driver_memory=memory, conf={"spark.sql.shuffle.partitions": cores})
    return common_session(config, "bench-train")


def cached_train(spark, path: str, partitions: int, level: str):
    from gap_spark.ops.train_split import storage_level

    frame = spark.read.parquet("file://" + os.path.abspath(path)).select("label", "features")
    frame = frame.repartition(partitions)
    lvl = storage_level(level)
    if lvl is not None:
        frame = frame.persist(lvl)
        frame.count()
    return frame


# --------------------------------------------------------------------------------------------------
# Fits
# --------------------------------------------------------------------------------------------------

def standardised(x_train: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Float64 copy of ``x_train`` scaled as Spark's StandardScaler does (sample std), with mean and std."""
    x = x_train.astype(np.float64)
    mean, std = x.mean(axis=0), x.std(axis=0, ddof=1)
    std[std == 0] = 1.0
    x -= mean
    x /= std
    return x, mean, std


def val_accuracy(model, val_vec) -> float:
    return model.transform(val_vec).selectExpr("avg(cast(prediction = label as double)) AS acc").first()["acc"]


def mllib_fit(spark, train_vec, val_vec, classes: int, reg: float, iters: int, block_mb: float) -> dict:
    """One MLlib fit of exactly ``iters`` iterations (tol 0) and its validation accuracy."""
    from gap_spark.core.progress import FitProgress
    from gap_spark.models.lr import lr_estimator
    from gap_spark.ops.features import output_column

    est = lr_estimator({"regParam": reg, "maxIter": iters, "tol": 0.0, "maxBlockSizeInMB": block_mb},
                       output_column(None))
    started = time.time()
    with FitProgress(spark, "bench-lr", heartbeat_s=3600, track_lbfgs=True) as progress:
        model = est.fit(train_vec)
    seconds = time.time() - started
    pred = val_accuracy(model, val_vec)
    stamps = progress.iteration_times
    per_iter = (stamps[-1] - stamps[0]) / (len(stamps) - 1) if len(stamps) > 1 else float("nan")
    return {"iters": int(model.summary.totalIterations), "seconds": seconds, "accuracy": float(pred),
            "loss": float(model.summary.objectiveHistory[-1]), "s_per_iter_log": per_iter,
            "first_iteration_after_s": (stamps[0] - started) if stamps else float("nan"),
            "iteration_times": list(stamps)}


def sklearn_fit(x_train, y_train, x_val, y_val, reg: float, iters: int, warm_pick: np.ndarray | None = None,
                warm_iters: int = 0) -> dict:
    """One scikit-learn lbfgs fit of ``iters`` iterations on the same objective, timed with standardisation.

    With ``warm_pick``, first ``warm_iters`` iterations on those rows, then ``warm_start=True`` on all rows:
    the same warm start gap-spark gives MLlib."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    started = time.time()
    x, mean, std = standardised(x_train)
    clf = LogisticRegression(solver="lbfgs", tol=1e-12, warm_start=warm_pick is not None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if warm_pick is not None:
            clf.set_params(C=1.0 / (reg * len(warm_pick)), max_iter=warm_iters)
            clf.fit(x[warm_pick], y_train[warm_pick])
        clf.set_params(C=1.0 / (reg * len(y_train)), max_iter=iters)  # the same mean objective on all rows
        clf.fit(x, y_train)
    seconds = time.time() - started
    acc = float((clf.predict((x_val - mean) / std) == y_val).mean())
    return {"iters": int(np.max(clf.n_iter_)), "seconds": seconds, "accuracy": acc}


def mllib_warm_fit(spark, train_vec, val_vec, reg: float, iters: int, block_mb: float, sample_rows: int,
                   sample_iters: int, rows: int) -> dict:
    """gap-spark's own warm-started fit (``models.lr.fit_lr``): a sample fit, then ``iters`` on all rows."""
    from gap_spark.models.lr import fit_lr
    from gap_spark.ops.features import output_column

    params = {"regParam": reg, "maxIter": iters, "tol": 0.0, "maxBlockSizeInMB": block_mb}
    started = time.time()
    fitted = fit_lr(spark, train_vec, params, output_column(None), heartbeat_s=3600,
                    warm_start={"sample_rows": sample_rows, "max_iter": sample_iters, "seed": 7}, rows=rows)
    model, warm = fitted.model, fitted.warm
    seconds = time.time() - started
    pred = val_accuracy(model, val_vec)
    return {"iters": int(model.summary.totalIterations), "seconds": seconds, "accuracy": float(pred),
            "sample_seconds": warm["seconds"] if warm else 0.0, "sample_rows": warm["sample_rows"] if warm else 0}


def stratified_pick(labels: np.ndarray, rows: int, seed: int) -> np.ndarray:
    """About ``rows`` indices with every class present: scikit-learn sizes its coefficients by the classes
    it sees, so a warm start from a sample missing a class cannot continue on all rows (MLlib reads K from
    the label metadata instead)."""
    rng = np.random.default_rng(seed)
    fraction = min(1.0, rows / len(labels))
    picks = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        picks.append(rng.choice(members, size=max(1, round(fraction * len(members))), replace=False))
    return np.sort(np.concatenate(picks))


def first_within(points: list[dict], target: float, within: float = 0.005) -> dict | None:
    """The first point whose accuracy is within ``within`` of ``target`` (or above it)."""
    return next((p for p in points if p["accuracy"] >= target - within), None)


def per_iteration(points: list[dict]) -> float:
    """(t_longest - t_shortest) / (iterations_longest - iterations_shortest)."""
    a, b = points[0], points[-1]
    return (b["seconds"] - a["seconds"]) / max(1, b["iters"] - a["iters"])


def time_to_accuracy(points: list[dict], within: float = 0.005) -> dict:
    final = points[-1]["accuracy"]
    p = first_within(points, final, within) or points[-1]
    return {"iters": p["iters"], "seconds": p["seconds"], "accuracy": p["accuracy"], "final": final}


# --------------------------------------------------------------------------------------------------
# Parts
# --------------------------------------------------------------------------------------------------

def run_lr(args, spark, data, blas: str) -> dict:
    from gap_spark.ops.features import fit_feature_model, with_label_metadata

    (train_path, x_train, y_train), (val_path, x_val, y_val) = data["train"], data["val"]
    schedule = [int(s) for s in args.schedule.split(",")]
    partitions = args.partitions or args.cores
    train = cached_train(spark, train_path, partitions, "MEMORY_AND_DISK")
    val = spark.read.parquet("file://" + os.path.abspath(val_path)).select("label", "features").cache()
    features = fit_feature_model(train)
    train_vec = features.transform(with_label_metadata(train, args.classes)).select("label", "features_scaled")
    val_vec = features.transform(with_label_metadata(val, args.classes)).select("label", "features_scaled")
    val_vec.count()

    os.environ["OMP_NUM_THREADS"] = str(args.cores)
    try:
        from threadpoolctl import threadpool_limits
        limiter = threadpool_limits(limits=args.cores)
    except ImportError:  # pragma: no cover
        limiter = None
    results: dict = {"mllib": [], "sklearn": []}
    print(f"\n== LR: {args.rows} x {args.dim} x {args.classes} classes, regParam {args.reg}, "
          f"{args.cores} cores, {partitions} partitions, maxBlockSizeInMB {args.block_mb}, BLAS {blas}")
    # Warm-up (JIT, first BLAS calls, Python imports): not counted.
    if not args.skip_sklearn:
        sklearn_fit(x_train[:2000], y_train[:2000], x_val[:100], y_val[:100], args.reg, 2)
    mllib_fit(spark, train_vec, val_vec, args.classes, args.reg, 2, args.block_mb)
    print(f"{'iters':>6} {'sklearn s':>10} {'acc':>7} {'mllib s':>9} {'acc':>7} {'mllib loss':>11}")
    for k in schedule:
        sk = sklearn_fit(x_train, y_train, x_val, y_val, args.reg, k) if not args.skip_sklearn else None
        ml = mllib_fit(spark, train_vec, val_vec, args.classes, args.reg, k, args.block_mb)
        results["mllib"].append(ml)
        if sk:
            results["sklearn"].append(sk)
        print(f"{k:>6} {sk['seconds'] if sk else float('nan'):>10.1f} {sk['accuracy'] if sk else float('nan'):>7.4f} "
              f"{ml['seconds']:>9.1f} {ml['accuracy']:>7.4f} {ml['loss']:>11.5f}", flush=True)
    if limiter is not None:
        limiter.unregister()
    ml_iter = per_iteration(results["mllib"])
    ml_log = float(np.median([p["s_per_iter_log"] for p in results["mllib"]]))
    ml_t2a = time_to_accuracy(results["mllib"])
    out = {"mllib_s_per_iter": ml_iter, "mllib_s_per_iter_from_log": ml_log, "mllib_time_to_accuracy": ml_t2a,
           "points": results}
    print(f"MLlib   : {ml_iter:.2f} s/iteration (from Breeze's log timestamps: {ml_log:.2f}); "
          f"time to accuracy {ml_t2a['seconds']:.1f} s ({ml_t2a['iters']} iterations, {ml_t2a['accuracy']:.4f} "
          f"vs final {ml_t2a['final']:.4f})")
    if results["sklearn"]:
        sk_iter = per_iteration(results["sklearn"])
        sk_t2a = time_to_accuracy(results["sklearn"])
        out.update({"sklearn_s_per_iter": sk_iter, "sklearn_time_to_accuracy": sk_t2a,
                    "ratio_per_iter": ml_iter / sk_iter,
                    "ratio_time_to_accuracy": ml_t2a["seconds"] / sk_t2a["seconds"]})
        print(f"sklearn : {sk_iter:.2f} s/iteration; time to accuracy {sk_t2a['seconds']:.1f} s "
              f"({sk_t2a['iters']} iterations, {sk_t2a['accuracy']:.4f} vs final {sk_t2a['final']:.4f})")
        print(f"ratio MLlib/sklearn: {out['ratio_per_iter']:.2f} per iteration, "
              f"{out['ratio_time_to_accuracy']:.2f} in time to accuracy")
    if not args.skip_warm:
        out["warm"] = run_warm(args, spark, train_vec, val_vec, (x_train, y_train, x_val, y_val),
                               target=results["mllib"][-1]["accuracy"])
    train.unpersist()
    val.unpersist()
    return out


def run_warm(args, spark, train_vec, val_vec, arrays, target: float) -> dict:
    """Warm start (gap-spark's default) for MLlib and, to be fair, for scikit-learn; time to ``target``
    accuracy (the longest cold MLlib fit's), sample fit included."""
    x_train, y_train, x_val, y_val = arrays
    sample_rows = args.warm_rows or max(args.rows // 10, 5 * args.classes)
    schedule = [int(s) for s in args.warm_schedule.split(",")]
    print(f"\n== Warm start: {args.warm_iters} iterations on ~{sample_rows} sampled rows, then 1 fit per point "
          f"on all {args.rows} rows; target accuracy {target:.4f} (the longest cold MLlib fit)")
    print(f"{'iters':>6} {'sklearn s':>10} {'acc':>7} {'mllib s':>9} {'acc':>7} {'of which sample s':>18}")
    points: dict = {"mllib": [], "sklearn": []}
    for k in schedule:
        ml = mllib_warm_fit(spark, train_vec, val_vec, args.reg, k, args.block_mb, sample_rows, args.warm_iters,
                            args.rows)
        sk = (sklearn_fit(x_train, y_train, x_val, y_val, args.reg, k,
                          warm_pick=stratified_pick(y_train, sample_rows, seed=7), warm_iters=args.warm_iters)
              if not args.skip_sklearn else None)
        points["mllib"].append(ml)
        if sk:
            points["sklearn"].append(sk)
        print(f"{k:>6} {sk['seconds'] if sk else float('nan'):>10.1f} {sk['accuracy'] if sk else float('nan'):>7.4f} "
              f"{ml['seconds']:>9.1f} {ml['accuracy']:>7.4f} {ml['sample_seconds']:>18.1f}", flush=True)
    out: dict = {"sample_rows": sample_rows, "sample_iters": args.warm_iters, "target": target, "points": points}
    ml_hit = first_within(points["mllib"], target)
    out["mllib_time_to_accuracy"] = ml_hit
    line = f"MLlib warm: time to accuracy {ml_hit['seconds']:.1f} s ({ml_hit['iters']} iterations on all rows)" \
        if ml_hit else "MLlib warm: target accuracy not reached"
    if points["sklearn"]:
        sk_hit = first_within(points["sklearn"], target)
        out["sklearn_time_to_accuracy"] = sk_hit
        if ml_hit and sk_hit:
            out["ratio_time_to_accuracy"] = ml_hit["seconds"] / sk_hit["seconds"]
            line += (f"; sklearn warm {sk_hit['seconds']:.1f} s ({sk_hit['iters']} iterations); "
                     f"ratio {out['ratio_time_to_accuracy']:.2f}")
    print(line)
    return out


def run_levers(args, spark, blas: str) -> dict:
    from gap_spark.ops.features import fit_feature_model, with_label_metadata

    data = generate(args.lever_rows, 1000, args.dim, args.classes, args.seed, args.work)
    train_path, val_path = data["train"][0], data["val"][0]
    val = spark.read.parquet("file://" + os.path.abspath(val_path)).select("label", "features")
    out: dict = {"blas": blas, "rows": args.lever_rows, "iters": args.lever_iters}

    def one(partitions: int, level: str, block: float) -> dict:
        train = cached_train(spark, train_path, partitions, level)
        features = fit_feature_model(train)
        tv = features.transform(with_label_metadata(train, args.classes)).select("label", "features_scaled")
        vv = features.transform(with_label_metadata(val, args.classes)).select("label", "features_scaled")
        r = mllib_fit(spark, tv, vv, args.classes, args.reg, args.lever_iters, block)
        train.unpersist()
        return r

    print(f"\n== LR levers: {args.lever_rows} x {args.dim} x {args.classes}, {args.lever_iters} iterations a fit, "
          f"{args.cores} cores, BLAS {blas}")
    print(f"{'lever':<34} {'s/iter':>7} {'to 1st iter s':>14} {'fit s':>7}")
    one(args.cores, "MEMORY_AND_DISK", 1.0)  # warm-up, not counted
    rows = []
    for block in [float(b) for b in args.lever_blocks.split(",") if b]:
        r = one(args.cores, "MEMORY_AND_DISK", block)
        rows.append({"lever": "maxBlockSizeInMB", "value": block, **r})
        print(f"{'maxBlockSizeInMB=' + str(block):<34} {r['s_per_iter_log']:>7.2f} "
              f"{r['first_iteration_after_s']:>14.1f} "
              f"{r['seconds']:>7.1f}", flush=True)
    for parts in [int(p) for p in args.lever_partitions.split(",") if p]:
        r = one(parts, "MEMORY_AND_DISK", 1.0)
        rows.append({"lever": "partitions", "value": parts, **r})
        print(f"{'partitions=' + str(parts) + f' ({parts / args.cores:g}/core)':<34} {r['s_per_iter_log']:>7.2f} "
              f"{r['first_iteration_after_s']:>14.1f} {r['seconds']:>7.1f}", flush=True)
    for level in [s for s in args.lever_storage.split(",") if s]:
        r = one(args.cores, level, 1.0)
        rows.append({"lever": "storage_level", "value": level, **r})
        print(f"{'storage_level=' + level:<34} {r['s_per_iter_log']:>7.2f} {r['first_iteration_after_s']:>14.1f} "
              f"{r['seconds']:>7.1f}", flush=True)
    out["rows_measured"] = rows
    return out


def run_rf(args, spark) -> dict:
    from gap_spark.models.rf import rf_estimator
    from gap_spark.ops.features import fit_feature_model, output_column, with_label_metadata

    base = {"numTrees": args.rf_trees, "maxDepth": 8, "maxBins": 16, "featureSubsetStrategy": "sqrt",
            "subsamplingRate": 0.5, "maxMemoryInMB": 1024, "checkpointInterval": -1, "cacheNodeIds": False,
            "minInstancesPerNode": 1, "seed": 7}
    base_pca, base_parts = 64, args.cores
    grid = args.rf_grid.split(",")
    variants: list[tuple[str, dict, int | None, int, int]] = []  # (label, params, pca, partitions, classes)
    if "base" in grid:
        variants.append(("base", {}, base_pca, base_parts, args.classes))
    if "bins" in grid:
        variants += [(f"maxBins={b}", {"maxBins": b}, base_pca, base_parts, args.classes) for b in (8, 32)]
    if "depth" in grid:
        variants += [(f"maxDepth={d}", {"maxDepth": d}, base_pca, base_parts, args.classes) for d in (6, 10)]
    if "features" in grid:
        variants += [(f"featureSubsetStrategy={s}", {"featureSubsetStrategy": s}, base_pca, base_parts, args.classes)
                     for s in ("onethird", "all")]
    if "classes" in grid:
        variants.append(("classes=100", {}, base_pca, base_parts, 100))
    if "pca" in grid:
        variants += [(f"pca_k={k}", {}, k, base_parts, args.classes) for k in (32, 128)]
    if "partitions" in grid:
        variants.append((f"partitions={4 * args.cores}", {}, base_pca, 4 * args.cores, args.classes))
    out = []
    for rows in [int(r) for r in args.rf_rows.split(",")]:
        data = generate(rows, 2000, args.dim, args.classes, args.seed, args.work)
        train = cached_train(spark, data["train"][0], args.cores, "MEMORY_AND_DISK")
        val = spark.read.parquet("file://" + os.path.abspath(data["val"][0])).select("label", "features")
        feature_models: dict = {}
        print(f"\n== RF: {rows} x {args.dim} x {args.classes}, {args.rf_trees} trees, base {base} "
              f"pca_k={base_pca}, {args.cores} cores")
        print(f"{'variant':<34} {'fit s':>7} {'s/tree':>7} {'nodes':>7} {'train acc':>9} {'val acc':>8}")
        for label, change, pca, parts, classes in variants:
            if pca not in feature_models:
                feature_models[pca] = fit_feature_model(train, pca_k=pca, pca_max_rows=200_000)
            fm = feature_models[pca]
            col = output_column(pca)
            frame = train if classes == args.classes else train.withColumn("label", train["label"] % classes)
            vframe = val if classes == args.classes else val.withColumn("label", val["label"] % classes)
            tv = fm.transform(with_label_metadata(frame, classes)).select("label", col)
            tv = tv.coalesce(parts) if parts <= args.cores else tv.repartition(parts)
            params = {**base, **change}
            started = time.time()
            model = rf_estimator(params, col).fit(tv)
            seconds = time.time() - started
            acc_t = model.transform(tv).selectExpr("avg(cast(prediction = label as double))").first()[0]
            vv = fm.transform(with_label_metadata(vframe, classes)).select("label", col)
            acc_v = model.transform(vv).selectExpr("avg(cast(prediction = label as double))").first()[0]
            row = {"rows": rows, "variant": label, "params": params, "pca_k": pca, "partitions": parts,
                   "classes": classes, "seconds": seconds, "nodes": model.totalNumNodes,
                   "train_accuracy": acc_t, "val_accuracy": acc_v}
            out.append(row)
            print(f"{label:<34} {seconds:>7.1f} {seconds / params['numTrees']:>7.1f} {model.totalNumNodes:>7} "
                  f"{acc_t:>9.4f} {acc_v:>8.4f}", flush=True)
        train.unpersist()
    return {"rf": out}


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from gap_spark.core.progress import blas_implementation

    load = os.getloadavg()[0]
    spark = spark_session(args.cores, args.driver_memory)
    blas = blas_implementation(spark)
    native = os.path.exists("/usr/lib/x86_64-linux-gnu/libblas.so.3")
    print(f"machine: {os.cpu_count()} CPUs, load average {load:.1f} at start; Spark local[{args.cores}], "
          f"driver memory {args.driver_memory}; libblas.so.3 {'present' if native else 'absent'}; "
          f"MLlib BLAS: {blas}")
    results: dict = {"args": vars(args), "blas": blas, "load_average_at_start": load}
    if not args.skip_lr:
        data = generate(args.rows, args.val_rows, args.dim, args.classes, args.seed, args.work)
        results["lr"] = run_lr(args, spark, data, blas)
    if args.levers:
        results["levers"] = run_levers(args, spark, blas)
    if args.rf:
        results.update(run_rf(args, spark))
    results["load_average_at_end"] = os.getloadavg()[0]
    print(f"\nload average at the end: {results['load_average_at_end']:.1f} "
          f"(the machine is shared; numbers are inflated by other work)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:  # a local scratch file named by the user
            json.dump(results, f, indent=2, default=str)
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

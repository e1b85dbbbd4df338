"""MLlib LR with the default config against scikit-learn's converged fit, on the same rows, scored on select.

For each size it builds (or reuses) a generated dataset with a selection split
(:mod:`benchmarks.select_data`), runs gap-spark's train stage with **no config beyond the paths** (LR only,
unless ``--models``), and fits scikit-learn's LogisticRegression (lbfgs, tol 1e-6, to convergence) on the
same train rows with the same objective (``C = 1 / (regParam n)`` on the standardised features). It
prints accuracy and log loss on the selection slice, the agreement of the two models' predictions there,
the iterations, how MLlib's fit stopped, and both times with their ratio. val and v2 accuracies are
printed as results only: nothing here is chosen on them.

    python benchmarks/bench_convergence.py --size oracle --size 1pct     # 8,000 x 32 x 20 and 1% scale
    python benchmarks/bench_convergence.py --size 10pct                  # 128k x 1024 x 1000 (long)
    python benchmarks/bench_convergence.py --size oracle --set train.lr.max_iter=3   # yesterday's defaults

The scikit-learn fit is cached per dataset and regParam under ``--cache``.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.common import dump, machine, print_table  # noqa: E402
from benchmarks.select_data import BenchData, at_scale, build  # noqa: E402
from benchmarks.sk_oracle import cached_oracle  # noqa: E402

SIZES = {
    "oracle": lambda root: build(root, 8000, 32, 20, 4000, 2000, seed=0),
    "1pct": lambda root: at_scale(root, 0.01),
    "10pct": lambda root: at_scale(root, 0.1),
}


def spark_session(memory: str):
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = (SparkSession.builder.master("local[2]").appName("bench-convergence")
             .config("spark.driver.memory", memory)
             .config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
             .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
             .config("spark.sql.shuffle.partitions", "2").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def mllib_predictions(spark, model_dir: str, data: BenchData, split: str) -> np.ndarray:
    """The saved model's predictions on ``split``, in the arrays' row order (results only for val/v2)."""
    from pyspark.ml import PipelineModel

    from gap_spark.contracts.dataset import read_split
    from gap_spark.core import fs

    model = PipelineModel.load(fs.to_spark_uri(model_dir))
    rows = model.transform(read_split(spark, data.data_dir, split)).select("row_id", "prediction").collect()
    by_id = {r["row_id"]: int(r["prediction"]) for r in rows}
    ids = sorted(by_id)
    return np.array([by_id[i] for i in ids])


def run_size(spark, name: str, data: BenchData, sets: list[str], models: str, cache: str, work: str) -> dict:
    from gap_spark.contracts.paths import Paths
    from gap_spark.core.config import load_config
    from gap_spark.stages.train import run_train

    run_dir = os.path.join(work, f"run_{name}_{int(time.time())}")
    config = load_config(sets=[f"paths.data={data.data_dir}", f"paths.run={run_dir}", f"paths.raw={work}/raw",
                               f"train.models=[{models}]", *sets])
    reg = config.settings.train.lr.reg_param
    dataset = os.path.basename(os.path.dirname(data.data_dir))
    oracle = cached_oracle(os.path.join(cache, f"oracle_{dataset}_{reg:g}.json"), data.arrays, reg)
    started = time.time()
    summary = run_train(spark, config, Paths.from_config(config))
    stage_s = time.time() - started
    lr = summary["models"]["lr"]
    out = {"size": name, "train_rows": data.rows("train"), "select_rows": summary["selection"]["rows"],
           "sets": " ".join(sets) or "(defaults)", "mllib_select": lr["selection"]["accuracy"],
           "sk_select": oracle["scores"]["select"]["accuracy"],
           "mllib_select_logloss": lr["selection"]["log_loss"],
           "sk_select_logloss": oracle["scores"]["select"]["log_loss"],
           "mllib_iterations": lr["iterations"], "stopped": lr.get("stopped"),
           "warm_iterations": (lr.get("warm_start") or {}).get("iterations"),
           "warm_s": lr["seconds"].get("warm_start", 0.0), "mllib_fit_s": lr["seconds"]["fit"],
           "mllib_lr_s": round(lr["seconds"]["features"] + lr["seconds"]["fit"], 1),
           "sk_iterations": oracle["iterations"], "sk_s": oracle["seconds"], "stage_s": round(stage_s, 1)}
    out["diff_points"] = round(100 * (out["mllib_select"] - out["sk_select"]), 2)
    out["time_ratio"] = round(out["mllib_lr_s"] / max(oracle["seconds"], 1e-9), 2)
    ours = mllib_predictions(spark, lr["path"], data, "select")
    theirs = np.array(oracle["scores"]["select"]["predictions"])
    order = np.argsort(_ids(data, "select"))
    out["agreement_select"] = float((ours == theirs[order]).mean())
    for split in ("val", "v2"):  # results only
        pred = mllib_predictions(spark, lr["path"], data, split)
        out[f"mllib_{split}"] = float((pred == data.arrays[split][1][np.argsort(_ids(data, split))]).mean())
        out[f"sk_{split}"] = oracle["scores"][split]["accuracy"]
    out["rounds"] = lr.get("rounds")
    for other in summary["models"]:
        if other != "lr":
            m = summary["models"][other]
            out[f"{other}_select"] = m["selection"]["accuracy"]
            out[f"{other}_fit_s"] = m["seconds"]["fit"]
    return out


def _ids(data: BenchData, split: str) -> np.ndarray:
    """The row ids of a split's arrays as written by :mod:`benchmarks.select_data` (sorted = array order)."""
    import pyarrow.parquet as pq

    return pq.read_table(os.path.join(data.data_dir, f"split={split}"), columns=["row_id"])["row_id"].to_numpy()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", action="append", choices=sorted(SIZES), help="oracle (8,000 x 32 x 20), 1pct, 10pct")
    p.add_argument("--set", action="append", default=[], help="config override (default: none)")
    p.add_argument("--models", default="lr")
    p.add_argument("--memory", default="8g")
    p.add_argument("--root", default=os.path.join(ROOT, "data", "bench"))
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "convergence.json"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)
    spark = spark_session(args.memory)
    rows = []
    for name in args.size or ["oracle"]:
        data = SIZES[name](args.root)
        rows.append(run_size(spark, name, data, args.set, args.models, args.root, os.path.join(args.root, "runs")))
        print(rows[-1], flush=True)
    print_table(rows, ["size", "train_rows", "select_rows", "sets", "mllib_select", "sk_select", "diff_points",
                       "agreement_select", "mllib_iterations", "stopped", "warm_iterations", "mllib_lr_s", "sk_s",
                       "time_ratio", "mllib_val", "sk_val", "mllib_v2", "sk_v2"])
    dump(args.out, {"machine": machine(), "runs": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

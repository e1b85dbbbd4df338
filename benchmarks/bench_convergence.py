"""MLlib LR with the default config against scikit-learn's converged fit, on the same rows, scored on select.

For each size it builds (or reuses) a generated dataset with a selection split
(:func:`benchmarks.common.selection_dataset`), runs gap-spark's train stage with **no config beyond the
paths** (LR only, unless ``--models``), and fits scikit-learn's LogisticRegression (lbfgs, tol 1e-6, to
convergence) on the same train rows with the same objective (``C = 1 / (regParam n)`` on the standardised features). It
prints accuracy and log loss on the selection slice, the agreement of the two models' predictions there,
the iterations, how MLlib's fit stopped, and both times with their ratio. val and v2 accuracies are
printed as results only: nothing here is chosen on them.

    python -m benchmarks.bench_convergence --size oracle --size 1pct     # 8,000 x 32 x 20 and 1% scale
    python -m benchmarks.bench_convergence --size 10pct                  # 128k x 1024 x 1000 (long)
    python -m benchmarks.bench_convergence --size oracle --set train.lr.max_iter=3   # yesterday's defaults

The scikit-learn fit is cached per dataset and regParam under ``--work``.
"""
from __future__ import annotations

import logging
import os
import time

import numpy as np

from benchmarks.common import (
    RESULTS,
    GeneratedData,
    add_spark_args,
    add_work_arg,
    bench_config,
    bench_parser,
    dump,
    machine,
    print_table,
    selection_dataset,
    spark_session,
)
from benchmarks.sk_oracle import cached_oracle

SIZES = {"oracle": None, "1pct": 0.01, "10pct": 0.1}  # None: 8,000 x 32 x 20


def bench_spark(cores: int, memory: str):
    """local[cores] with ``cores`` shuffle partitions, as the convergence and defaults runs measure."""
    config = bench_config(cores=cores, driver_memory=memory, conf={"spark.sql.shuffle.partitions": cores})
    return spark_session(config, "bench-convergence")


def mllib_predictions(spark, model_dir: str, data: GeneratedData, split: str) -> np.ndarray:
    """The saved model's predictions on ``split``, in the arrays' row order (results only for val/v2)."""
    from pyspark.ml import PipelineModel

    from gap_spark.contracts.dataset import read_split
    from gap_spark.core import fs

    model = PipelineModel.load(fs.to_spark_uri(model_dir))
    rows = model.transform(read_split(spark, data.data_dir, split)).select("row_id", "prediction").collect()
    by_id = {r["row_id"]: int(r["prediction"]) for r in rows}
    ids = sorted(by_id)
    return np.array([by_id[i] for i in ids])


def run_size(spark, name: str, data: GeneratedData, sets: list[str], models: str, cache: str, work: str) -> dict:
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


def _ids(data: GeneratedData, split: str) -> np.ndarray:
    """The row ids of a split's arrays (in array order, which is the Parquet file's order)."""
    return np.asarray(data.ids(split))


def main(argv=None) -> int:
    p = bench_parser(__doc__)
    p.add_argument("--size", action="append", choices=sorted(SIZES), help="oracle (8,000 x 32 x 20), 1pct, 10pct")
    p.add_argument("--set", action="append", default=[], help="config override (default: none)")
    p.add_argument("--models", default="lr")
    add_spark_args(p, driver_memory="8g")
    add_work_arg(p, os.path.join("data", "bench"), "generated datasets, oracle fits and runs")
    p.add_argument("--out", default=os.path.join(RESULTS, "convergence.json"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)
    spark = bench_spark(args.cores, args.driver_memory)
    rows = []
    for name in args.size or ["oracle"]:
        data = selection_dataset(args.work, SIZES[name])
        rows.append(run_size(spark, name, data, args.set, args.models, args.work, os.path.join(args.work, "runs")))
        print(rows[-1], flush=True)
    print_table(rows, ["size", "train_rows", "select_rows", "sets", "mllib_select", "sk_select", "diff_points",
                       "agreement_select", "mllib_iterations", "stopped", "warm_iterations", "mllib_lr_s", "sk_s",
                       "time_ratio", "mllib_val", "sk_val", "mllib_v2", "sk_v2"])
    dump(args.out, {"machine": machine(), "runs": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

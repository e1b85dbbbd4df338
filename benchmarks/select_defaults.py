"""Re-derive train's defaults on the selection slice (never on val or v2).

Each part fits on the train split of a generated dataset with a selection split
(:func:`benchmarks.common.selection_dataset`) and scores every candidate on ``split=select``: accuracy and log loss.
val and v2 are not read at all. Run each part under ``/work/bin/heavy`` (or alone on the machine).

- ``lr-rounds``: the LR warm start as configured, then the fit on all rows traced round by round
  (``--check-every`` iterations a round, rules off, ``--rounds`` rounds): objective, its relative change
  per iteration, accuracy and log loss on select, seconds. Every stopping rule (tol, patience) can then be
  replayed on the trace: the script prints where each candidate would have stopped and what it kept.
- ``lr-reg``: regParam candidates, each fitted by the default stopping rule.
- ``rf``: the forest's depth, trees, bins and PCA k, one factor at a time around the defaults.
- ``mlp``: the perceptron's hidden width (its stopping rule as configured), with its time.

    python -m benchmarks.select_defaults lr-rounds --scale 0.1 --check-every 3 --rounds 10
    python -m benchmarks.select_defaults rf --scale 0.01
    python -m benchmarks.select_defaults mlp --scale 0.01 --values 128,256,512
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import time

from benchmarks.bench_convergence import bench_spark
from benchmarks.common import (
    RESULTS,
    add_spark_args,
    add_work_arg,
    bench_parser,
    machine,
    print_table,
    selection_dataset,
)

log = logging.getLogger("select_defaults")


class Bench:
    """The cached train split and the selection slice of one dataset, with the stage's own pieces."""

    def __init__(self, spark, data_dir: str, sets: list[str]):
        from gap_spark.contracts.dataset import read_manifest, read_split
        from gap_spark.core.config import load_config
        from gap_spark.ops.features import with_label_metadata

        self.spark, self.data_dir = spark, data_dir
        self.config = load_config(sets=[f"paths.data={data_dir}", *sets])
        self.settings = self.config.settings.train
        manifest = read_manifest(data_dir)
        self.dim, self.classes = manifest["dim"], manifest["classes"]
        train = read_split(spark, data_dir, "train", manifest).select("label", "features")
        self.train = train.repartition(spark.sparkContext.defaultParallelism).cache()
        self.rows = self.train.count()
        self.labelled = with_label_metadata(self.train, self.classes)
        select = read_split(spark, data_dir, "select", manifest).select("label", "features")
        self.select = with_label_metadata(select, self.classes).cache()
        self.select_rows = self.select.count()
        self._features: dict = {}

    def features(self, k):
        from gap_spark.ops.features import effective_pca_k, fit_feature_model

        k = effective_pca_k(k, self.dim)
        if k not in self._features:
            t0 = time.time()
            self._features[k] = (fit_feature_model(self.train, pca_k=k, pca_max_rows=self.settings.pca_max_rows,
                                                   seed=self.settings.rf.seed, train_rows=self.rows),
                                 time.time() - t0)
        return k, *self._features[k]

    def fit(self, name: str, settings, pca_k=None) -> dict:
        """One model through its registry spec, as the stage fits it; scored on select."""
        from gap_spark.models import model_spec
        from gap_spark.models.base import FitContext
        from gap_spark.ops.features import output_column

        spec = model_spec(name)
        k, feature_model, feature_s = self.features(pca_k if pca_k is not None else spec.pca_k(settings))
        col = output_column(k)
        ctx = FitContext(spark=self.spark, settings=settings, rows=self.rows, checkpoint_dir="file:///tmp/ckpt",
                         select=feature_model.transform(self.select).select("label", col), input_dim=k or self.dim,
                         classes=self.classes)
        frame = spec.prepare(feature_model.transform(self.labelled).select("label", col), ctx)
        params = spec.shaped(spec.params(settings), k or self.dim, self.classes)
        t0 = time.time()
        result = spec.fit(frame, params, col, ctx)
        fit_s = time.time() - t0
        scorer = ctx.scorer()
        assert scorer is not None, "the selection slice is missing"
        metrics = scorer(result.classifier)
        return {"model": name, "select_accuracy": metrics["accuracy"], "select_log_loss": metrics["log_loss"],
                "iterations": result.iterations, "stopped": result.extras.get("stopped"), "fit_s": round(fit_s, 1),
                "features_s": round(feature_s, 1), "warm": result.extras.get("warm_start"),
                "extras": {k: v for k, v in result.extras.items() if k != "warm_start"}}


def replace(settings, section: str, **values):
    """``settings`` with ``train.<section>.<key>`` replaced (section '' for train itself)."""
    if not section:
        return dataclasses.replace(settings, **values)
    return dataclasses.replace(settings, **{section: dataclasses.replace(getattr(settings, section), **values)})


# --------------------------------------------------------------------------------------------------
# LR: the rounds trace and the rules replayed on it
# --------------------------------------------------------------------------------------------------

def lr_rounds(bench: Bench, args) -> dict:
    from gap_spark.models.lr import _round_fit, _warm_start, lr_params, warm_start_params
    from gap_spark.models.stopping import StopRule, fit_in_rounds
    from gap_spark.ops.features import output_column

    lr = bench.settings.lr
    k, feature_model, _ = bench.features(None)
    col = output_column(k)
    frame = feature_model.transform(bench.labelled).select("label", col)
    select = feature_model.transform(bench.select).select("label", col)

    def score(model):
        from gap_spark.ops.train_split import selection_metrics
        return selection_metrics(model.transform(select))

    params = lr_params(lr)
    t0 = time.time()
    warm = warm_start_params(lr) if not args.cold else None
    initial, warm_info = None, None
    if warm and warm["sample_rows"] < bench.rows:  # the configured warm start, with its own rules
        initial, warm_info = _warm_start(bench.spark, frame, params, col, 3600, warm, bench.rows, lr.check_every,
                                         lr.patience, score)
    warm_s = time.time() - t0
    rule = StopRule(budget=args.check_every * args.rounds, check_every=args.check_every, tol=0.0, patience=0)
    result = fit_in_rounds(_round_fit(bench.spark, frame, params, col, "lr", 3600), rule, score=score,
                           initial=initial, label="lr-trace")
    return {"warm": warm_info, "warm_s": round(warm_s, 1), "rounds": result.rounds, "check_every": args.check_every}


def replay(trace: dict, tols: list[float], patiences: list[int]) -> list[dict]:
    """Where each (tol, patience) would have stopped on the trace, what it kept and what it cost."""
    rows = []
    rounds = trace["rounds"]
    for tol in tols:
        for patience in patiences:
            best, since, kept, spent = None, 0, 0, 0.0
            for i, r in enumerate(rounds):
                spent += r["seconds"]
                loss = r["select"]["log_loss"]
                if best is None or loss < best[0]:
                    best, since = (loss, i), 0
                else:
                    since += 1
                stop = None
                if r["relative_change"] is not None and r["relative_change"] < tol:
                    stop, kept = "objective", i
                elif patience and since >= patience:
                    stop, kept = "selection", best[1]
                if stop:
                    break
            else:
                stop, kept = "budget", len(rounds) - 1
            k = rounds[kept]
            rows.append({"tol": tol, "patience": patience, "stopped": stop, "rounds_run": i + 1,
                         "iterations_kept": (kept + 1) * trace["check_every"],
                         "select_accuracy": k["select"]["accuracy"], "select_log_loss": k["select"]["log_loss"],
                         "full_fit_s": round(spent, 1), "lr_s": round(spent + trace["warm_s"], 1)})
    return rows


# --------------------------------------------------------------------------------------------------
# Grids
# --------------------------------------------------------------------------------------------------

def lr_reg(bench: Bench, args) -> list[dict]:
    rows = []
    for reg in [float(v) for v in args.values.split(",")]:
        r = bench.fit("lr", replace(bench.settings, "lr", reg_param=reg))
        rows.append({"reg_param": reg, **r})
        print(rows[-1], flush=True)
    return rows


def rf_grid(bench: Bench, args) -> list[dict]:
    base = bench.settings.rf
    points: list[tuple[str, dict]] = [("base", {})]
    for item in args.values.split(","):
        key, value = item.split("=")
        points.append((item, {key: int(value)}))
    rows = []
    for label, change in points:
        settings = replace(bench.settings, "rf", **change)
        r = bench.fit("rf", settings, pca_k=settings.rf.pca_k)
        rows.append({"point": label, "num_trees": settings.rf.num_trees, "max_depth": settings.rf.max_depth,
                     "max_bins": settings.rf.max_bins, "pca_k": settings.rf.pca_k, **r})
        print(rows[-1], flush=True)
    del base
    return rows


def mlp_grid(bench: Bench, args) -> list[dict]:
    rows = []
    for hidden in [int(v) for v in args.values.split(",")]:
        r = bench.fit("mlp", replace(bench.settings, "mlp", hidden=hidden))
        rows.append({"hidden": hidden, **r})
        print(rows[-1], flush=True)
    return rows


def main(argv=None) -> int:
    p = bench_parser(__doc__)
    p.add_argument("part", choices=["lr-rounds", "lr-reg", "rf", "mlp"])
    p.add_argument("--scale", type=float, default=0.01)
    p.add_argument("--oracle", action="store_true", help="8,000 x 32 x 20 instead of --scale")
    p.add_argument("--set", action="append", default=[], help="config override")
    p.add_argument("--values", default="", help="the candidates (part-specific)")
    p.add_argument("--check-every", type=int, default=3)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--cold", action="store_true", help="lr-rounds without the warm start")
    p.add_argument("--tols", default="1e-3,3e-4,1e-4,3e-5")
    p.add_argument("--patiences", default="0,1,2")
    add_spark_args(p, driver_memory="8g")
    add_work_arg(p, os.path.join("data", "bench"), "generated datasets")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)
    data = selection_dataset(args.work, None if args.oracle else args.scale)
    spark = bench_spark(args.cores, args.driver_memory)
    bench = Bench(spark, data.data_dir, args.set)
    scale = "8000x32x20" if args.oracle else f"{args.scale:g}"
    out = {"machine": machine(), "part": args.part, "scale": scale, "train_rows": bench.rows,
           "select_rows": bench.select_rows, "sets": args.set}
    started = time.time()
    if args.part == "lr-rounds":
        out["trace"] = lr_rounds(bench, args)
        out["replay"] = replay(out["trace"], [float(t) for t in args.tols.split(",")],
                               [int(v) for v in args.patiences.split(",")])
        print_table(out["replay"], ["tol", "patience", "stopped", "rounds_run", "iterations_kept", "select_accuracy",
                                    "select_log_loss", "full_fit_s", "lr_s"])
    elif args.part == "lr-reg":
        out["rows"] = lr_reg(bench, args)
        print_table(out["rows"], ["reg_param", "select_accuracy", "select_log_loss", "iterations", "stopped", "fit_s"])
    elif args.part == "rf":
        out["rows"] = rf_grid(bench, args)
        print_table(out["rows"], ["point", "num_trees", "max_depth", "max_bins", "pca_k", "select_accuracy",
                                  "select_log_loss", "fit_s", "features_s"])
    else:
        out["rows"] = mlp_grid(bench, args)
        print_table(out["rows"], ["hidden", "select_accuracy", "select_log_loss", "iterations", "stopped", "fit_s"])
    out["seconds"] = round(time.time() - started, 1)
    path = os.path.join(RESULTS, f"select_defaults_{args.part}_{scale}.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1, default=str)
    print("written", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""gap-spark's whole pipeline beside the prototype's approach, in the same run on the same files.

Each gap-spark stage runs as its own ``gap-spark <stage>`` process (a fresh driver, as spark-submit
would start it), and so does each baseline; every process tree is sampled for its resident memory
(driver JVM with the local executors, driver Python, Python workers). The table pairs each stage with
its baseline where one exists:

- ingest: gap-spark's validated ingest against pyarrow's streaming CSV-to-Parquet (baseline B);
- train: gap-spark's LR fit (warm start included) against scikit-learn LogisticRegression with the same
  objective and ``--sklearn-iters`` iterations (on the rows that fit ``--lr-memory-gb``), and the whole
  train stage against the prototype's chunked pandas + SGDClassifier.partial_fit pass over all of
  train (baseline A);
- evaluate, shift, explain, visualize, report: gap-spark only.

``--scaling`` re-runs every Spark stage on local[1] into a separate dataset and run, for the speedup
of local[N] over local[1] per stage.

    python -m benchmarks.harness --scale 0.1 --work data/bench/10pct
    python -m benchmarks.harness --scale 1.0 --config conf/full.yaml --work data/bench/full --skip-baselines
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

from benchmarks.common import add_config_args, add_work_arg, bench_parser, fmt, machine, print_table
from benchmarks.memwatch import run_watched

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SPARK_STAGES = ("ingest", "train", "evaluate", "shift", "explain", "visualize", "report")
MODELS = ("lr", "rf")


def parse_args(argv=None) -> argparse.Namespace:
    p = bench_parser(__doc__)
    p.add_argument("--scale", type=float, default=0.01, help="fraction of the real sizes (1.0 = 1,281,167 train)")
    add_work_arg(p, "data/bench", "CSVs, datasets, runs and results")
    add_config_args(p)  # the config and --set reach every gap-spark stage
    p.add_argument("--cores", type=int, default=2, help="local[N] for gap-spark; threads for the baselines")
    p.add_argument("--skip-baselines", action="store_true")
    p.add_argument("--epochs", type=int, default=1, help="SGD epochs over train in baseline A")
    p.add_argument("--lr-memory-gb", type=float, default=8.0, help="memory budget for scikit-learn's LR rows")
    p.add_argument("--sklearn-iters", type=int, default=10,
                   help="lbfgs iterations of baseline A's scikit-learn LR (cold start; gap-spark's LR warm-starts "
                        "from a sample fit and then runs train.lr.max_iter on all rows)")
    p.add_argument("--scaling", action="store_true", help="also run every Spark stage on local[1]")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between memory samples")
    return p.parse_args(argv)


def gap_spark_command(stage: str, args: argparse.Namespace, data: str, run: str, raw: str, cores: int) -> list[str]:
    command = [sys.executable, "-m", "gap_spark.cli", stage]
    if args.config:
        command += ["--config", args.config]
    sets = [f"paths.raw={raw}", f"paths.data={data}", f"paths.run={run}", f"spark.master=local[{cores}]",
            *args.sets]
    if stage == "train":
        command.append("--overwrite")
    for item in sets:
        command += ["--set", item]
    return command


def load_json(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def ensure_data(args: argparse.Namespace, raw: str) -> dict:
    """Generate the CSVs at ``--scale`` unless the same generation is already there."""
    from gap_spark.contracts.dataset import synth_marker_path
    from gap_spark.core.config import load_config
    from gap_spark.ops.generator import generator_spec

    synth_sets = [f"synth.scale={args.scale}", *(s for s in args.sets if s.startswith("synth."))]
    spec = generator_spec(load_config(args.config, sets=synth_sets).settings.synth)
    marker = synth_marker_path(raw)
    if os.path.exists(marker) and load_json(marker).get("spec") == spec:
        print(f"benchmark: reusing the CSVs in {raw}", flush=True)
        return {"seconds": None, "reused": True}
    command = [sys.executable, "-m", "gap_spark.cli", "synth", "--out", raw]
    if args.config:
        command += ["--config", args.config]
    for item in synth_sets:
        command += ["--set", item]
    print(f"benchmark: generating {raw} at scale {args.scale}", flush=True)
    result = run_watched(command, args.interval)
    if result["returncode"]:
        raise SystemExit(f"benchmark: gap-spark synth failed (exit {result['returncode']})")
    return {"seconds": result["seconds"], "reused": False, "peak_rss_mb": result["peak_rss_mb"]}


def run_spark_stages(args: argparse.Namespace, raw: str, data: str, run: str, cores: int,
                     stages: tuple[str, ...] = SPARK_STAGES, env: dict | None = None) -> dict:
    """Each stage as its own process on local[cores]; wall time and peak memory per stage.

    ``stages`` (default :data:`SPARK_STAGES`) in order; ``env`` the processes' environment (None: ours).
    """
    results: dict = {}
    for stage in stages:
        if stage == "ingest" and os.path.exists(data):
            shutil.rmtree(data)  # a fresh ingest every time: the manifest would make it a no-op
        print(f"benchmark: gap-spark {stage} on local[{cores}]", flush=True)
        result = run_watched(gap_spark_command(stage, args, data, run, raw, cores), args.interval, env=env)
        if result["returncode"]:
            raise SystemExit(f"benchmark: gap-spark {stage} failed on local[{cores}] (exit {result['returncode']})")
        results[stage] = {"seconds": result["seconds"], "peak_rss_mb": result["peak_rss_mb"]}
    return results


def run_baselines(args: argparse.Namespace, raw: str, work: str) -> dict:
    out: dict = {}
    arrow_dir = os.path.join(work, "pyarrow-dataset")
    shutil.rmtree(arrow_dir, ignore_errors=True)
    json_b = os.path.join(work, "baseline_pyarrow.json")
    print("benchmark: baseline B (pyarrow CSV -> Parquet)", flush=True)
    result = run_watched([sys.executable, "-m", "benchmarks.baselines", "pyarrow", "--raw", raw, "--out", arrow_dir,
                          "--json", json_b], args.interval, cwd=ROOT)
    if result["returncode"]:
        raise SystemExit("benchmark: baseline B failed")
    out["pyarrow"] = {"seconds": result["seconds"], "peak_rss_mb": result["peak_rss_mb"], **load_json(json_b)}
    shutil.rmtree(arrow_dir, ignore_errors=True)

    json_a = os.path.join(work, "baseline_prototype.json")
    from gap_spark.core.config import load_config

    config = load_config(args.config, sets=[s for s in args.sets if not s.startswith("spark.")])
    print("benchmark: baseline A (pandas chunks, StandardScaler + SGDClassifier partial_fit, sklearn LR)", flush=True)
    command = [sys.executable, "-m", "benchmarks.baselines", "prototype", "--raw", raw, "--json", json_a,
               "--classes", str(config.settings.synth.classes), "--epochs", str(args.epochs),
               "--lr-memory-gb", str(args.lr_memory_gb), "--reg-param", str(config.settings.train.lr.reg_param),
               "--lr-max-iter", str(args.sklearn_iters), "--jobs", str(args.cores)]
    env = {**os.environ, "OPENBLAS_NUM_THREADS": str(args.cores), "OMP_NUM_THREADS": str(args.cores)}
    result = run_watched(command, args.interval, env=env, cwd=ROOT)
    if result["returncode"]:
        raise SystemExit("benchmark: baseline A failed")
    out["prototype"] = {"seconds": result["seconds"], "peak_rss_mb": result["peak_rss_mb"], **load_json(json_a)}
    return out


def _ratio(a, b):
    return round(a / b, 2) if a is not None and b else None


def build_tables(stages: dict, baselines: dict, run: str, scaling: dict | None) -> dict:
    """The stage table (times, ratios, memory), the accuracy table and the scaling table."""
    train_summary = load_json(os.path.join(run, "train_summary.json"))
    metrics = load_json(os.path.join(run, "metrics.json"))
    proto = baselines.get("prototype")
    arrow = baselines.get("pyarrow")

    def mem(entry):
        return entry["peak_rss_mb"] if entry else {}

    rows = []
    for stage in SPARK_STAGES:
        entry = stages[stage]
        base_name, base_s, base_mem = None, None, {}
        if stage == "ingest" and arrow:
            base_name, base_s, base_mem = "pyarrow CSV->Parquet", arrow["seconds"], mem(arrow)
        elif stage == "train" and proto:
            s = proto["seconds"]
            base_name = f"pandas chunks + SGD ({proto['epochs']} epoch) + sklearn LR"
            base_s = s["scale_pass"] + s["sgd_fit"] + s["lr_read"] + s["lr_fit"]
            base_mem = mem(proto)
        rows.append({"stage": stage, "gap_spark_s": entry["seconds"], "baseline": base_name, "baseline_s": base_s,
                     "ratio": _ratio(entry["seconds"], base_s),
                     "driver_jvm_peak_mb": round(entry["peak_rss_mb"]["java"]),
                     "python_peak_mb": round(entry["peak_rss_mb"]["python"]),
                     "tree_peak_mb": round(entry["peak_rss_mb"]["total"]),
                     "baseline_peak_mb": round(base_mem["total"]) if base_mem else None})
    lr_fit = train_summary["models"].get("lr", {}).get("seconds", {}).get("fit")
    if proto and lr_fit is not None:
        rows.append({"stage": "train: LR fit only", "gap_spark_s": lr_fit, "baseline": (
            f"sklearn LR lbfgs, {proto['lr_rows']} rows, {proto['lr_iterations']} iterations"),
            "baseline_s": proto["seconds"]["lr_fit"],
            "ratio": _ratio(lr_fit * proto["lr_rows"] / proto["train_rows"], proto["seconds"]["lr_fit"]),
            "note": "ratio per row: gap-spark's time scaled to the baseline's rows"})
    total = sum(stages[s]["seconds"] for s in SPARK_STAGES)
    rows.append({"stage": "total", "gap_spark_s": round(total, 1),
                 "tree_peak_mb": max(round(stages[s]["peak_rss_mb"]["total"]) for s in SPARK_STAGES)})

    accuracy = []
    for name in MODELS:
        block = metrics["models"].get(name)
        if block:
            accuracy.append({"model": f"gap-spark {name}", "rows": train_summary["models"][name]["rows"],
                             "val": block["val"]["accuracy"], "v2": block["v2"]["accuracy"],
                             "gap": block["gap"]["accuracy"], "gap_ci95": block["gap"]["ci95"]})
    if proto:
        for key, label, rows_used in (("sgd", "baseline A: SGD partial_fit", proto["train_rows"]),
                                      ("sklearn_lr", "baseline A: sklearn LR", proto["lr_rows"])):
            acc = proto["accuracy"][key]
            accuracy.append({"model": label, "rows": rows_used, "val": acc["val"], "v2": acc["v2"],
                             "gap": acc["val"] - acc["v2"], "gap_ci95": None})

    scaling_rows = []
    if scaling:
        for stage in SPARK_STAGES:
            one, many = scaling[stage]["seconds"], stages[stage]["seconds"]
            scaling_rows.append({"stage": stage, "local_1_s": one, "local_n_s": many, "speedup": _ratio(one, many)})
    return {"stages": rows, "accuracy": accuracy, "scaling": scaling_rows}


def markdown(tables: dict, header: str) -> str:
    def table(rows: list[dict], columns: list[str]) -> str:
        if not rows:
            return ""
        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
        return "\n".join(lines) + "\n"

    return "\n".join([
        header,
        table(tables["stages"], ["stage", "gap_spark_s", "baseline", "baseline_s", "ratio", "driver_jvm_peak_mb",
                                 "python_peak_mb", "tree_peak_mb", "baseline_peak_mb"]),
        table(tables["accuracy"], ["model", "rows", "val", "v2", "gap", "gap_ci95"]),
        table(tables["scaling"], ["stage", "local_1_s", "local_n_s", "speedup"]),
    ])


def main(argv=None) -> int:
    args = parse_args(argv)
    os.chdir(ROOT)  # `-m benchmarks.baselines` and relative config paths resolve from the repository
    work = os.path.abspath(args.work)
    raw, data, run = (os.path.join(work, name) for name in ("raw", "dataset", "run"))
    os.makedirs(work, exist_ok=True)
    started = time.time()
    info = {"machine": machine(), "scale": args.scale, "cores": args.cores, "sets": args.sets,
            "config": args.config, "command": " ".join(["python", "-m", "benchmarks.harness", *(argv or sys.argv[1:])]),
            "load_average_at_start": os.getloadavg()[0]}
    info["synth"] = ensure_data(args, raw)
    stages = run_spark_stages(args, raw, data, run, args.cores)
    baselines = {} if args.skip_baselines else run_baselines(args, raw, work)
    scaling = None
    if args.scaling:
        scaling = run_spark_stages(args, raw, os.path.join(work, "dataset-1core"), os.path.join(work, "run-1core"), 1)
    tables = build_tables(stages, baselines, run, scaling)
    info["seconds"] = round(time.time() - started, 1)
    info["load_average_at_end"] = os.getloadavg()[0]
    result = {**info, "stage_runs": stages, "baselines": baselines, "scaling_runs": scaling, **tables}
    with open(os.path.join(work, "benchmark.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    header = (f"## Benchmark at scale {args.scale}: {info['machine']['date']}, {info['machine']['cores']} cores, "
              f"{info['machine']['memory_gb']} GB, local[{args.cores}]\n\n`{info['command']}`\n")
    text = markdown(tables, header)
    with open(os.path.join(work, "benchmark.md"), "w", encoding="utf-8") as f:
        f.write(text)
    print()
    print_table(tables["stages"], ["stage", "gap_spark_s", "baseline", "baseline_s", "ratio", "tree_peak_mb",
                                   "baseline_peak_mb"])
    print()
    print_table(tables["accuracy"], ["model", "rows", "val", "v2", "gap"])
    if tables["scaling"]:
        print()
        print_table(tables["scaling"], ["stage", "local_1_s", "local_n_s", "speedup"])
    print(f"\nbenchmark: written {work}/benchmark.json and benchmark.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: the explain stage on generated data whose shift is known, with the parts and the estimators' errors.

Each scenario runs the pipeline's own stages (synth, ingest, train, evaluate, explain) in its own work
directory, at ``--scale`` (1.0 = 1,281,167 / 50,000 / 10,000 rows, D=1024, K=1000) with the generator's
shift knobs set as the scenario says, then prints the gap's parts with their intervals, every label-free
estimator's error against the true v2 accuracy, the mitigations before and after, the weight diagnostics,
and the explain stage's own time (its ``seconds``) and the process tree's peak memory while it ran (the
JVM already started by the earlier stages, so an upper bound of what explain alone needs).

Scenarios (all other shift knobs at zero unless said):

- ``linear``: a pure covariate shift, V2 selected on a fixed linear projection (``v2_selection=2``);
- ``margin``: a pure covariate shift, V2 selected on the class margin (``v2_selection=1.5``, non-linear);
- ``hardness``: only ``v2_extra_hardness`` (0.065, its default): p(y | x) itself differs;
- ``defaults``: the generator's defaults (hardness and a mean shift of 5% of the features).

    python -m benchmarks.bench_explain --scale 0.01 --work data/bench/explain
    python -m benchmarks.bench_explain --scale 0.1 --scenario margin --set synth.val_rows=50000
"""
from __future__ import annotations

import os
import time

from benchmarks.common import (
    add_config_args,
    add_work_arg,
    bench_config,
    bench_parser,
    dump,
    machine,
    print_table,
    spark_session,
)
from benchmarks.memwatch import MemoryWatch

ZERO = {"synth.v2_extra_hardness": 0.0, "synth.covariate_shift": 0.0}
SCENARIOS: dict[str, dict[str, object]] = {
    "linear": {**ZERO, "synth.v2_selection": 2.0, "synth.v2_selection_kind": "linear"},
    "margin": {**ZERO, "synth.v2_selection": 1.5, "synth.v2_selection_kind": "margin"},
    "hardness": {"synth.covariate_shift": 0.0},
    "defaults": {},
}
BEFORE = ("synth", "ingest", "train", "evaluate")


def run_scenario(spark, name: str, scale: float, work: str, config_file: str | None, sets: list[str]) -> dict:
    from gap_spark.contracts.paths import Paths
    from gap_spark.core import fs
    from gap_spark.core.config import load_config
    from gap_spark.pipeline import run_pipeline

    root = os.path.join(work, name)
    knobs = [f"{k}={v}" for k, v in SCENARIOS[name].items()]
    config = load_config(config_file, sets=[f"synth.scale={scale}", f"paths.raw={root}/raw",
                                            f"paths.data={root}/dataset", f"paths.run={root}/run", *knobs, *sets])
    paths = Paths.from_config(config)
    started = time.time()
    summary = run_pipeline(spark, config, paths, stages=BEFORE)
    before = round(time.time() - started, 1)
    with MemoryWatch(os.getpid()) as watch:
        run_pipeline(spark, config, paths, synth=False, stages=("explain",), force=True)
    doc = fs.read_json(paths.run_dir.explain)
    return {"scenario": name, "upstream_seconds": before, "explain_peak_rss_gb": round(watch.peak["total"] / 1024, 2),
            "stages": {s: v.get("status") for s, v in summary["stages"].items()}, "explain": doc}


def rows_of(result: dict) -> tuple[list[dict], list[dict], list[dict]]:
    parts, estimators, mitigations = [], [], []
    for model, block in result["explain"]["models"].items():
        row = {"scenario": result["scenario"], "model": model}
        for key, part in block["parts"].items():
            ci = part["ci95"] or [None, None]
            row[key] = f"{part['value']:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]" if ci[0] is not None else part["value"]
        w = block["weights"]
        row.update(ess=f"{w.get('ess_fraction', 0):.2f}", auc=f"{w.get('auc', 0):.3f}")
        parts.append(row)
        for key, e in block["estimators"].items():
            ci = e["error_ci95"] or [0, 0]
            estimators.append({"scenario": result["scenario"], "model": model, "estimator": key,
                               "estimate": round(100 * e["estimate"], 2), "truth": round(100 * e["truth"], 2),
                               "error_pts": f"{100 * e['error']:+.2f} [{100 * ci[0]:+.2f}, {100 * ci[1]:+.2f}]"})
        for key, m in block["mitigations"].items():
            if "v2" not in m:
                continue
            change, gap = m["v2"]["change"], m["gap_points"]
            mitigations.append({
                "scenario": result["scenario"], "model": model, "mitigation": key,
                "v2": f"{100 * m['v2']['before']['value']:.1f} -> {100 * m['v2']['after']['value']:.1f}",
                "v2_change_pts": f"{100 * change['value']:+.2f} [{100 * change['ci95'][0]:+.2f}, "
                                 f"{100 * change['ci95'][1]:+.2f}]",
                "gap_pts": f"{gap['before']['value']:.2f} -> {gap['after']['value']:.2f}",
                "verdict": m["v2_verdict"]})
    return parts, estimators, mitigations


def main() -> None:
    parser = bench_parser(__doc__, full_help=True)
    parser.add_argument("--scale", type=float, default=0.01)
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS), help="default: all four")
    add_work_arg(parser, os.path.join("data", "bench", "explain"), "scenarios' CSVs, datasets and runs")
    add_config_args(parser)
    args = parser.parse_args()

    spark = spark_session(bench_config(args.config, args.sets), "bench-explain")
    results = [run_scenario(spark, name, args.scale, args.work, args.config, args.sets)
               for name in args.scenario or SCENARIOS]
    tables = [rows_of(r) for r in results]
    print("\nThe gap's parts (percentage points, val minus v2, 95% bootstrap intervals):")
    print_table([r for t in tables for r in t[0]],
                ["scenario", "model", "gap", "label_mix", "covariate", "residual", "ess", "auc"])
    print("\nLabel-free estimates of v2 accuracy (%) and their errors (points, paired 95% intervals):")
    print_table([r for t in tables for r in t[1]], ["scenario", "model", "estimator", "estimate", "truth", "error_pts"])
    print("\nMitigations (v2 accuracy %, its change in points with the paired 95% interval, the gap in points):")
    print_table([r for t in tables for r in t[2]],
                ["scenario", "model", "mitigation", "v2", "v2_change_pts", "gap_pts", "verdict"])
    print("\nThe explain stage's time (s) and phases:")
    for r in results:
        print(f"  {r['scenario']}: {r['explain']['seconds']:.1f} s, peak RSS of the process tree "
              f"{r['explain_peak_rss_gb']} GB; phases {r['explain']['phase_seconds']} "
              f"(synth to evaluate: {r['upstream_seconds']} s)")
    dump(os.path.join(args.work, "bench_explain.json"), {"machine": machine(), "scale": args.scale,
                                                         "results": results})


if __name__ == "__main__":
    main()

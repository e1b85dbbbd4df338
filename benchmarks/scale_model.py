"""A scale model past one machine: each stage's time as fixed + serial + parallel parts, predicted on clusters.

Measures the real pipeline (every ``gap-spark`` stage as its own process, through the harness) on
generated data at two sizes (``--scales``) and two core counts: local[2] pinned to cores 0,1 and
local[1] pinned to core 0 with ``taskset`` (BLAS, OpenMP and numba threads set to match). Each
configuration runs as one child process under ``--lock`` (``/work/bin/heavy`` here; empty for none),
so the pinning reaches the stage processes and their JVMs and the wait for the lock is not timed.

Per stage it fits ``T(n, c) = fixed + serial * w + parallel * w / c``, where ``w`` is the stage's work:
its rows ``n`` (train rows for ingest and train, val + v2 rows for evaluate, shift, explain and
visualize, none for report); LR's steady iterations are modelled per iteration, its first iteration on
all rows apart (``--log`` gives the per-iteration seconds from this benchmark's console output). The
three parts are non-negative least squares. The check on this machine: fit from local[2] at
both sizes and local[1] at the small size, predict local[1] at the large size, and compare.

It then predicts each stage on clusters of 8, 32 and 128 cores for ImageNet-1k and ImageNet-21k-sized
data, with the stated assumptions (per-stage and per-iteration cluster overheads, LR's iteration
counts, executors of 4 cores), and the memory per executor for LR's cached blocks and the train cache.

    python -m benchmarks.scale_model --scales 0.005,0.01 --work /tmp/scale --out benchmarks/results/scale_model
    python -m benchmarks.scale_model --fit-only --out benchmarks/results/scale_model   # refit saved points
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks.common import add_config_args, bench_parser, dump, machine, markdown_table
from benchmarks.harness import SPARK_STAGES as STAGES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# What each modelled part's work grows with: "train" rows, "test" (val + v2) rows, or nothing.
BASIS = {"ingest": "train_csv", "train: start + cache": "train", "train: lr first": "train",
         "train: lr iterations": "train",
         "train: lr other": "train", "train: rf": "train", "evaluate": "test", "shift": "test",
         "explain": "test", "visualize": "test", "report": None}
PARTS = tuple(BASIS)
# Settings every configuration runs with besides paths, scale and master: LR's iterations on all rows
# fixed (the stopping rules would otherwise run a different count in each configuration, and the model
# is per iteration), and val / v2 at `--test-factor` times the train scale.
FIXED_SETS = ("train.lr.max_iter=10",)

FULL_TRAIN = 1_281_167
SELECT_FRACTION = 0.02
DATASETS = {  # rows of the CSVs; train's fit rows lose the select split
    "ImageNet-1k (1,281,167 x 1024, K=1000)": {"train_csv": FULL_TRAIN, "test": 60_000},
    "ImageNet-21k-sized (13,000,000 x 1024, K=1000)": {"train_csv": 13_000_000, "test": 60_000},
}
DIM = 1024
CLUSTER_CORES = (8, 32, 128)
EXECUTOR_CORES = 4
# Assumptions for a cluster (not measured here): each stage pays executor start-up, task scheduling and
# shuffle latency once; each LR iteration pays a treeAggregate of its K x D gradient (8 MB) over the network.
CLUSTER_STAGE_OVERHEAD_S = 30.0
CLUSTER_ITERATION_OVERHEAD_S = 1.0
# LR's iterations assumed at full scale: the 10% run with the defaults (README, "Current figures"): the
# warm start ran 80 iterations on 20,000 rows, then 80 on all rows.
LR_ITERATIONS = {"warm_start": 80, "warm_rows": 20_000, "all_rows": 80}
# Measured full-scale stage times on this machine (2 cores), for the check of the local[2] extrapolation.
# Both runs did 3 LR iterations on all rows after a 10-iteration warm start on 20,000 rows.
REFERENCE = {
    "README history, 2026-11-28 (stages run separately)": {
        "ingest": 255.0, "train: lr": 1109.0, "train: rf": 1032.0, "shift": 317.0, "visualize": 171.0,
        "report": 1.1},
    "issue 17, one-piece run (shared for its first 30 min)": {
        "ingest": 240.0, "train": 2009.0, "train: lr": 1340.0, "evaluate": 111.0, "shift": 311.0,
        "visualize": 114.0},
}
# The second size for stages this run measured at one size only (all at 60,000 val + v2 rows on local[2]);
# other code versions, partly on a shared machine: a stated stand-in, not this run's measurement.
ANCHORS = {
    "evaluate": (60_000.0, 2.0, 111.0, "issue 17's one-piece full-scale run"),
    "shift": (60_000.0, 2.0, 311.0, "issue 17's one-piece full-scale run"),
    "visualize": (60_000.0, 2.0, 114.0, "issue 17's one-piece full-scale run"),
    "explain": (60_000.0, 2.0, 706.0, "README's 10% run (full val and v2), shared"),
}
REFERENCE_ITERATIONS = {"warm_start": 10, "warm_rows": 20_000, "all_rows": 3}
_FIT_ROWS = FULL_TRAIN * (1 - 0.02)
# The calibration: issue 17's one-piece full-scale run on local[2] as one more point for the parts this
# run measured at two sizes (train minus LR minus the forest's PCA + trees = start + cache). Its first
# 30 minutes were shared, so ingest's and LR's figures are upper bounds.
CALIBRATION = {
    "ingest": [(float(FULL_TRAIN), 2.0, 240.0)],
    "train: start + cache": [(_FIT_ROWS, 2.0, 2009.0 - 1340.0 - 134.0 - 417.0)],
    # LR: warm start 145 s (10 iterations on 20,000 rows), first full-data iteration 810 s, then 197 and 188 s
    "train: lr first": [(_FIT_ROWS, 2.0, 810.0)],
    "train: lr iterations": [(_FIT_ROWS, 2.0, (197.0 + 188.0) / 2), (20_000.0, 2.0, 145.0 / 10)],
    "train: rf": [(_FIT_ROWS, 2.0, 134.0 + 417.0)],
}


# --------------------------------------------------------------------------------------------------
# The model (pure numpy)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StageModel:
    """``T = fixed + fixed_parallel / c + serial * w + parallel * w / c`` seconds for ``w`` rows on ``c`` cores.

    ``fixed_parallel`` (the 4-term form) is start-up work that itself shares the cores (JVM start and JIT,
    Python workers' imports); the 3-term form has it at 0.
    """

    fixed: float
    serial: float
    parallel: float
    cores_varied: bool = True
    anchor: str | None = None  # where a second size came from, when not from this run
    fixed_parallel: float = 0.0

    def predict(self, work: float, cores: float) -> float:
        return self.fixed + self.fixed_parallel / cores + self.serial * work + self.parallel * work / cores

    def as_dict(self) -> dict[str, Any]:
        return {"fixed_s": self.fixed, "fixed_parallel_s": self.fixed_parallel, "serial_s_per_unit": self.serial,
                "parallel_s_per_unit": self.parallel, "cores_varied": self.cores_varied, "anchor": self.anchor}


def nnls(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Least squares ``min |a x - b|`` with ``x >= 0`` (scipy's Lawson-Hanson solver)."""
    from scipy.optimize import nnls as scipy_nnls

    return scipy_nnls(np.asarray(a, float), np.asarray(b, float))[0]


def fit_stage(points: Sequence[tuple[float, float, float]], terms: int = 3) -> StageModel:
    """Fit one stage from ``(work, cores, seconds)`` points; each column scaled to unit size before the solve.

    ``terms=4`` adds the fixed cost that shares the cores (``fixed_parallel / c``).
    """
    w = np.array([p[0] for p in points], float)
    c = np.array([p[1] for p in points], float)
    t = np.array([p[2] for p in points], float)
    a = np.column_stack([np.ones_like(w), w, w / c])
    scale = np.where(np.abs(a).max(axis=0) > 0, np.abs(a).max(axis=0), 1.0)
    if len(set(c.tolist())) == 1:  # one core count: serial and parallel cannot be told apart; call it all serial
        x = nnls(a[:, [0, 1]] / scale[[0, 1]], t) / scale[[0, 1]]
        return StageModel(float(x[0]), float(x[1]), 0.0, cores_varied=False)
    if terms == 4:
        a4 = np.column_stack([a, 1.0 / c])
        scale4 = np.append(scale, 1.0)
        x = nnls(a4 / scale4, t) / scale4
        return StageModel(float(x[0]), float(x[1]), float(x[2]), fixed_parallel=float(x[3]))
    x = nnls(a / scale, t) / scale
    return StageModel(float(x[0]), float(x[1]), float(x[2]))


# --------------------------------------------------------------------------------------------------
# Measuring one configuration (the child process)
# --------------------------------------------------------------------------------------------------


def sizes(scale: float, test_factor: float) -> dict[str, int]:
    return {"train": max(1, round(FULL_TRAIN * scale)), "val": max(1, round(50_000 * scale * test_factor)),
            "v2": max(1, round(10_000 * scale * test_factor))}


def stage_sets(args: argparse.Namespace, scale: float, cores: int) -> list[str]:
    rows = sizes(scale, args.test_factor)
    return [*FIXED_SETS, f"synth.val_rows={rows['val']}", f"synth.v2_rows={rows['v2']}",
            f"visualize.threads={cores}", *args.sets]


def measure(args: argparse.Namespace) -> int:
    """Synth (if not there), then every stage on local[cores]; one JSON of times, rows and phases."""
    from benchmarks import harness

    scale, cores = args.scale, args.cores
    base = os.path.join(os.path.abspath(args.work), f"s{scale:g}")
    raw, data, run = (os.path.join(base, "raw"), os.path.join(base, f"c{cores}", "dataset"),
                      os.path.join(base, f"c{cores}", "run"))
    hargs = argparse.Namespace(scale=scale, config=args.config, sets=stage_sets(args, scale, cores), interval=1.0)
    os.chdir(ROOT)
    started = time.time()
    synth = harness.ensure_data(hargs, raw)
    load = os.getloadavg()[0]
    wanted = tuple(s for s in STAGES if s in args.stages.split(","))
    stages = harness.run_spark_stages(hargs, raw, data, run, cores, stages=wanted, env=dict(os.environ))
    with open(os.path.join(data, "_manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    with open(os.path.join(run, "train_summary.json"), encoding="utf-8") as f:
        summary = json.load(f)
    split_rows = {s: e["rows_written"] for s, e in manifest["splits"].items()}
    models = {name: {"seconds": m["seconds"], "iterations": m.get("iterations"), "rows": m.get("rows"),
                     "warm_start": m.get("warm_start")} for name, m in summary["models"].items()}
    out = {"scale": scale, "cores": cores, "affinity": sorted(os.sched_getaffinity(0)),
           "threads": {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "NUMBA_NUM_THREADS")},
           "sets": hargs.sets, "synth": synth, "rows": split_rows, "stages": stages, "models": models,
           "train_seconds_inside": summary.get("seconds"), "load_average_before": load,
           "load_average_after": os.getloadavg()[0], "seconds": round(time.time() - started, 1)}
    dump(args.json, out)
    return 0


def run_configuration(args: argparse.Namespace, scale: float, cores: int, path: str) -> dict:
    """One configuration as a pinned child under the lock; its JSON."""
    cpus = ",".join(str(i) for i in range(cores))
    threads = str(cores)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": threads, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
           "NUMBA_NUM_THREADS": threads, "PYTHONPATH": ROOT}
    command = [*args.lock.split(), "taskset", "-c", cpus, sys.executable, "-m", "benchmarks.scale_model", "measure",
               "--scale", str(scale), "--cores", str(cores), "--work", args.work, "--json", path,
               "--test-factor", str(args.test_factor), "--stages", args.stages]
    if args.config:
        command += ["--config", args.config]
    for item in args.sets:
        command += ["--set", item]
    print(f"scale_model: scale {scale:g}, local[{cores}] on cpus {cpus} ({time.strftime('%H:%M:%S')})", flush=True)
    code = subprocess.call(command, env=env, cwd=ROOT)
    if code:
        raise SystemExit(f"scale_model: the configuration scale {scale:g} local[{cores}] failed (exit {code})")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# --------------------------------------------------------------------------------------------------
# From measurements to parts, work and the model
# --------------------------------------------------------------------------------------------------


def part_times(m: Mapping) -> dict[str, float]:
    """Seconds of each modelled part of one configuration (train split into start + cache, LR and RF)."""
    stages = m["stages"]
    out = {s: float(stages[s]["seconds"]) for s in STAGES if s != "train" and s in stages}
    models = m["models"]
    used = 0.0
    if "lr" in models:
        phases = models["lr"]["seconds"]
        fit = float(phases["fit"])
        each = m.get("lr_iteration_seconds")
        if each:  # the first iteration (statistics pass, block build, JIT) apart from the steady ones
            out["train: lr iterations"] = float(sum(each[1:]))
            out["train: lr first"] = fit - out["train: lr iterations"]
        else:
            out["train: lr iterations"] = fit
        out["train: lr other"] = float(sum(v for k, v in phases.items() if k not in ("fit", "warm_start")))
        used += fit + out["train: lr other"]
    if "rf" in models:
        out["train: rf"] = float(sum(v for k, v in models["rf"]["seconds"].items() if k != "warm_start"))
        used += out["train: rf"]
    out["train: start + cache"] = max(0.0, float(stages["train"]["seconds"]) - used)
    return out


def part_work(part: str, rows: Mapping[str, float]) -> float:
    """The rows a part scales with (``train: lr iterations`` is modelled per iteration), 0 for none."""
    basis = BASIS[part]
    if basis is None:
        return 0.0
    return float(rows[basis])


def lr_iterations_covered(m: Mapping) -> float:
    """How many LR iterations the part ``train: lr iterations`` of ``m`` holds (all but the first when split)."""
    iters = float((m["models"].get("lr") or {}).get("iterations") or 1)
    return iters - 1 if m.get("lr_iteration_seconds") else iters


def read_iteration_logs(paths: Sequence[str]) -> dict[tuple[float, int], list[float]]:
    """``(scale, cores)`` -> LR's seconds per iteration, from this benchmark's own console logs (last run wins)."""
    import re

    head = re.compile(r"scale_model: scale (\S+), local\[(\d+)\]")
    line = re.compile(r"lr: iteration (\d+), .*?([\d.]+) s for this iteration")
    out: dict[tuple[float, int], list[float]] = {}
    for path in paths:
        key = None
        with open(path, encoding="utf-8", errors="replace") as f:
            for text in f:
                if (h := head.search(text)):
                    key = (float(h.group(1)), int(h.group(2)))
                    out[key] = []
                elif key is not None and (it := line.search(text)):
                    if int(it.group(1)) == 1:
                        out[key] = []
                    out[key].append(float(it.group(2)))
    return {k: v for k, v in out.items() if v}


def measured_rows(m: Mapping) -> dict[str, float]:
    r = m["rows"]
    train_csv = r.get("train", 0) + r.get("select", 0)
    return {"train_csv": train_csv, "train": r.get("train", 0), "test": r.get("val", 0) + r.get("v2", 0)}


def points(measurements: Sequence[Mapping]) -> dict[str, list[tuple[float, float, float]]]:
    """Per part, ``(work, cores, seconds)`` of every configuration."""
    out: dict[str, list[tuple[float, float, float]]] = {p: [] for p in PARTS}
    for m in measurements:
        rows = measured_rows(m)
        iters = lr_iterations_covered(m)
        for part, seconds in part_times(m).items():
            per = iters if part == "train: lr iterations" else 1.0  # LR's steady iterations: seconds per iteration
            out[part].append((part_work(part, rows), float(m["cores"]), seconds / per))
    return out


def fit_all(measurements: Sequence[Mapping], anchors: Mapping[str, tuple[float, float, float, str]] | None = None,
            extra: Mapping[str, Sequence[tuple[float, float, float]]] | None = None,
            terms: int = 3) -> dict[str, StageModel]:
    """A model per part that was measured at two sizes at least (or that has no rows to grow with).

    A part measured at one size only, with an entry in ``anchors`` (``(work, cores, seconds, source)``: a
    figure measured elsewhere on this machine), is fitted through its points and the anchor, and says so.
    ``extra`` adds ``(work, cores, seconds)`` points to a part (the calibration on full-scale figures).
    """
    out = {}
    for part, pts in points(measurements).items():
        if not pts:
            continue
        if extra and part in extra and len({p[0] for p in pts}) > 1:
            out[part] = dataclasses.replace(fit_stage([*pts, *extra[part]], terms), anchor="this run + full scale")
            continue
        if BASIS[part] is None or len({p[0] for p in pts}) > 1:
            out[part] = fit_stage(pts, terms)
        elif anchors and part in anchors:
            work, cores, seconds, source = anchors[part]
            out[part] = dataclasses.replace(fit_stage([*pts, (work, cores, seconds)]), anchor=source)
    return out


def validation(measurements: Sequence[Mapping], extra: Mapping[str, Sequence[tuple[float, float, float]]] | None = None,
               terms: int = 3) -> list[dict]:
    """Fit on local[2] (both sizes) + local[1] (small size); predict local[1] at the large size.

    ``extra`` and ``terms`` as for :func:`fit_all` (the calibrated 4-term check).
    """
    scales = sorted({m["scale"] for m in measurements})
    small, large = scales[0], scales[-1]
    fit_on = [m for m in measurements if m["cores"] > 1 or m["scale"] == small]
    target = [m for m in measurements if m["cores"] == 1 and m["scale"] == large]
    if len(scales) < 2 or not target:
        return []
    models = fit_all(fit_on, extra=extra, terms=terms)
    held = target[0]
    rows = measured_rows(held)
    iters = lr_iterations_covered(held)
    out: list[dict[str, Any]] = []
    measured = part_times(held)
    for part in PARTS:
        if part not in measured or part not in models:
            continue
        predicted = models[part].predict(part_work(part, rows), 1) * (iters if part == "train: lr iterations" else 1)
        out.append({"part": part, "predicted_s": round(predicted, 1), "measured_s": round(measured[part], 1),
                    "error_pct": round(100 * (predicted - measured[part]) / measured[part], 1) if measured[part]
                    else None})
    total_p = sum(r["predicted_s"] for r in out)
    total_m = sum(r["measured_s"] for r in out)
    out.append({"part": "total", "predicted_s": round(total_p, 1), "measured_s": round(total_m, 1),
                "error_pct": round(100 * (total_p - total_m) / total_m, 1) if total_m else None})
    return out


def predict_part(model: StageModel, part: str, rows: Mapping[str, float], cores: int, iterations: Mapping[str, int],
                 cluster: bool) -> float:
    """One part's seconds at ``rows`` on ``cores``; LR's fit runs the warm start and then the all-rows iterations."""
    if part == "train: lr iterations":  # the warm start's iterations, then all rows' (less the first, when apart)
        steady = iterations["all_rows"] - (1 if iterations.get("first_apart") else 0)
        seconds = (iterations["warm_start"] * model.predict(iterations["warm_rows"], cores)
                   + steady * model.predict(rows["train"], cores))
        if cluster:
            seconds += (iterations["warm_start"] + iterations["all_rows"]) * CLUSTER_ITERATION_OVERHEAD_S
    else:
        seconds = model.predict(part_work(part, rows), cores)
    if cluster and (part in STAGES or part == "train: start + cache"):  # once per stage; train's on its start
        seconds += CLUSTER_STAGE_OVERHEAD_S
    return seconds


def full_rows(train_csv: int, test: int) -> dict[str, float]:
    return {"train_csv": train_csv, "train": train_csv * (1 - SELECT_FRACTION), "test": test}


def stage_totals(parts: Mapping[str, float]) -> dict[str, float]:
    """Parts back to stages: train = start + cache + LR + RF; with LR and RF apart too."""
    out = {s: parts[s] for s in STAGES if s in parts}
    train_parts = [p for p in parts if p.startswith("train: ")]
    if train_parts:
        out["train"] = sum(parts[p] for p in train_parts)
        out["train: lr"] = sum(parts.get(p, 0.0) for p in (
            "train: lr first", "train: lr iterations", "train: lr other"))
        if "train: rf" in parts:
            out["train: rf"] = parts["train: rf"]
    out["total"] = sum(out[s] for s in STAGES if s in out)
    return out


def cluster_predictions(models: Mapping[str, StageModel]) -> list[dict]:
    rows_out = []
    for name, sizes_ in DATASETS.items():
        rows = full_rows(sizes_["train_csv"], sizes_["test"])
        for cores in CLUSTER_CORES:
            iters = {**LR_ITERATIONS, "first_apart": int("train: lr first" in models)}
            parts = {p: predict_part(m, p, rows, cores, iters, cluster=True) for p, m in models.items()}
            rows_out.append({"data": name, "cores": cores, **{k: round(v) for k, v in stage_totals(parts).items()}})
    return rows_out


def memory_plan() -> list[dict]:
    """Memory per executor for LR's cached blocks (8 n D bytes) and the cached train split (4 n D bytes + labels)."""
    out = []
    for name, sizes_ in DATASETS.items():
        n = full_rows(sizes_["train_csv"], sizes_["test"])["train"]
        blocks = 8 * n * DIM / 2**30
        cache = (4 * n * DIM + 16 * n) / 2**30
        for cores in CLUSTER_CORES:
            executors = max(1, cores // EXECUTOR_CORES)
            per = (blocks + cache) / executors
            # storage is (heap - 300 MB) x spark.memory.fraction 0.6; leave room for tasks' own arrays
            heap = max(4.0, (per / 0.6) * 1.25 + 0.3)
            out.append({"data": name, "cores": cores, "executors": executors, "lr_blocks_gb_total": round(blocks, 1),
                        "train_cache_gb_total": round(cache, 1), "cached_gb_per_executor": round(per, 2),
                        "executor_memory_gb": int(np.ceil(heap))})
    return out


def local_check(models: Mapping[str, StageModel]) -> list[dict]:
    """The model's local[2] prediction at full scale beside the full-scale figures measured on this machine."""
    rows = full_rows(FULL_TRAIN, 60_000)
    iters = {**REFERENCE_ITERATIONS, "first_apart": int("train: lr first" in models)}
    parts = {p: predict_part(m, p, rows, 2, iters, cluster=False) for p, m in models.items()}
    totals = stage_totals(parts)
    out = []
    for key in ("ingest", "train", "train: lr", "train: rf", "evaluate", "shift", "explain", "visualize", "report"):
        anchored = models.get(key) is not None and models[key].anchor is not None
        row: dict[str, Any] = {"stage": key, "model_local2_s": "(anchored on it)" if anchored
                               else round(totals[key]) if key in totals else None}
        for label, figures in REFERENCE.items():
            row[label] = figures.get(key)
        out.append(row)
    return out


# --------------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------------

SETTINGS_ADVICE = """\
Settings a cluster run should change, and why:
- Partitions: 2-3 per core (`train.partitions`, and `spark.default.parallelism`), so that every core has
  a task and a slow task does not hold a stage; the default (about 128 MB of floats each, a multiple of
  the cores) gives 40 partitions at full scale, which leaves most of 128 cores idle. At 32 cores: 64-96.
- `spark.executor.memory`: sized so LR's standardised blocks (8 x n x D bytes: 10.3 GB for ImageNet-1k,
  104 GB for 13M rows) plus the cached train split (4 x n x D bytes) fit in the executors' storage
  fraction (0.6 of heap less 300 MB) with room left for tasks; otherwise MEMORY_AND_DISK spills and every
  LR iteration re-reads disk. The table gives the heap per executor for executors of 4 cores.
- `train.lr.max_block_size_mb` (MLlib's maxBlockSizeInMB): each block's product with the K x D
  coefficients is one dgemm; larger blocks (4-16 MB) amortise the per-block cost on executors with
  memory to spare, 1 MB keeps the per-task arrays small. It also sets the rows per block = size / (8 D).
- `spark.sql.shuffle.partitions` (default 200): evaluate, shift and explain aggregate per class and per
  feature (K = 1000, D = 1024 groups); 200 is too many tasks for 8 cores at 60k test rows and too few for
  128 cores on 13M train rows. Set it to 2-3 x cores, or leave AQE (`spark.sql.adaptive.enabled`) to
  coalesce.
- `train.rf.max_memory_mb` (MLlib's maxMemoryInMB): the per-task histogram budget decides how many nodes
  one pass over the data splits (K x bins x features-per-node doubles per node); on executors with more
  memory per core, 1-2 GB means fewer passes over the data per tree level. Keep it x task slots inside
  the executor's execution memory.
- The driver (`spark.driver.memory`): the forest's model (about 330 MB at depth 10) and the visualize
  sample are collected there; 8 GB is enough, and it does not grow with n.
"""


def report(measurements: list[dict], out: str, command: str) -> str:
    models = fit_all(measurements, ANCHORS)
    valid = validation(measurements)
    valid4 = validation(measurements, CALIBRATION, terms=4)
    clusters = cluster_predictions(models)
    calibrated = fit_all(measurements, ANCHORS, CALIBRATION, terms=4)
    clusters_cal = cluster_predictions(calibrated)
    cal_rows = [{"part": p, "fixed_s": round(mo.fixed, 1), "fixed_parallel_s": round(mo.fixed_parallel, 1),
                 "serial_us_per_unit": round(mo.serial * 1e6, 2),
                 "parallel_us_per_unit": round(mo.parallel * 1e6, 2)}
                for p, mo in calibrated.items() if p in CALIBRATION]
    memory = memory_plan()
    local = local_check(models)
    measured_rows_ = []
    for m in sorted(measurements, key=lambda m: (m["scale"], -m["cores"])):
        rows = measured_rows(m)
        entry = {"config": f"{m['scale']:g} local[{m['cores']}]", "train rows": int(rows["train"]),
                 "val+v2 rows": int(rows["test"]), "lr iterations": (m["models"].get("lr") or {}).get("iterations")}
        entry.update({p: round(s, 1) for p, s in part_times(m).items()})
        measured_rows_.append(entry)
    model_rows = [{"part": p, "n": BASIS[p] or "-", "cores varied": "yes" if mo.cores_varied else "no",
                   "second size from": mo.anchor or "this run",
                   "fixed_s": round(mo.fixed, 1),
                   "serial_us_per_unit": round(mo.serial * 1e6, 2), "parallel_us_per_unit": round(mo.parallel * 1e6, 2)}
                  for p, mo in models.items()]
    cols = ["data", "cores", *STAGES[:2], "train: lr", "train: rf", *STAGES[2:], "total"]
    missing = [p for p in PARTS if p not in models]
    seen = {p: [(m["scale"], m["cores"], round(part_times(m)[p], 1)) for m in measurements if p in part_times(m)]
            for p in missing}
    not_modelled = "\n".join(
        f"- {p}: not modelled (measured only at " + ", ".join(f"{s:g} local[{c}]: {t} s" for s, c, t in seen[p])
        + "); left out of the totals" for p in missing)
    text = "\n\n".join([
        f"## Scale model ({machine()['date']}, {machine()['cores']} cores)\n\n`{command}`",
        "### Measured seconds per part\n\n" + markdown_table(measured_rows_, ["config", "train rows", "val+v2 rows",
                                                                             "lr iterations", *PARTS]),
        "### Fitted parts (every configuration measured; per row; LR's steady iterations per iteration; a part whose "
        "cores were not varied has its per-row part counted as serial, an upper bound)\n\n"
        + markdown_table(model_rows, ["part", "n", "cores varied", "second size from", "fixed_s", "serial_us_per_unit",
                                      "parallel_us_per_unit"]),
        "### Check: local[1] at the large size, predicted from the other three (3-term model)\n\n"
        + markdown_table(valid, ["part", "predicted_s", "measured_s", "error_pct"]),
        "### Check, calibrated 4-term model: fixed + fixed_parallel / c + serial n + parallel n / c from the other "
        "three and issue 17's full-scale local[2] figures\n\n"
        + markdown_table(valid4, ["part", "predicted_s", "measured_s", "error_pct"]),
        "### The model's local[2] at full scale beside this machine's full-scale figures\n\n"
        + markdown_table(local, ["stage", "model_local2_s", *REFERENCE]),
        "### Predicted seconds per stage on a cluster\n\n" + markdown_table(clusters, cols)
        + ("\n\n" + not_modelled if missing else ""),
        "### Calibrated 4-term model: all four configurations and issue 17's full-scale local[2] figures "
        "(ingest, train)\n\n" + markdown_table(cal_rows, ["part", "fixed_s", "fixed_parallel_s", "serial_us_per_unit",
                                                          "parallel_us_per_unit"])
        + "\n\n" + markdown_table(clusters_cal, cols),
        "### Memory per executor (executors of 4 cores)\n\n" + markdown_table(memory, [
            "data", "cores", "executors", "lr_blocks_gb_total", "train_cache_gb_total", "cached_gb_per_executor",
            "executor_memory_gb"]),
        "### Assumptions\n\n" + ASSUMPTIONS, SETTINGS_ADVICE])
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "scale_model.md"), "w", encoding="utf-8") as f:
        f.write(text + "\n")
    dump(os.path.join(out, "scale_model.json"), {
        "command": command, "machine": machine(), "measurements": measurements,
        "models": {p: m.as_dict() for p, m in models.items()}, "validation": valid,
        "validation_calibrated_4term": valid4, "local_check": local,
        "clusters": clusters, "calibrated_models": {p: m.as_dict() for p, m in calibrated.items()},
        "clusters_calibrated": clusters_cal, "calibration_points": CALIBRATION, "anchors": ANCHORS,
        "memory": memory, "assumptions": {
            "cluster_stage_overhead_s": CLUSTER_STAGE_OVERHEAD_S,
            "cluster_iteration_overhead_s": CLUSTER_ITERATION_OVERHEAD_S, "lr_iterations": LR_ITERATIONS,
            "executor_cores": EXECUTOR_CORES, "datasets": DATASETS, "select_fraction": SELECT_FRACTION}})
    print(text)
    return text


ASSUMPTIONS = f"""\
- Each part's time is fixed + serial x n + parallel x n / cores, fitted by non-negative least squares on
  this machine's points; n is the train rows (ingest: the train CSV's; train: the rows it fits), the
  val + v2 rows (evaluate, shift, explain, visualize), or nothing (report). LR's fit is two parts (with
  --log): its first iteration on all rows (statistics pass, block build, JIT) once, and the model of one
  steady iteration, run {LR_ITERATIONS['warm_start']} times on {LR_ITERATIONS['warm_rows']:,} rows (the warm
  start) and {LR_ITERATIONS['all_rows'] - 1} more times on all rows: the 10% run with the defaults took
  {LR_ITERATIONS['warm_start']} + {LR_ITERATIONS['all_rows']}. Time to convergence at 13M rows is not known.
- A cluster core runs like one of this machine's cores; executors hold {EXECUTOR_CORES} cores each.
- Cluster overheads (assumed, not measured): {CLUSTER_STAGE_OVERHEAD_S:g} s per stage (executors, scheduling,
  shuffle latency) and {CLUSTER_ITERATION_OVERHEAD_S:g} s per LR iteration (a treeAggregate of the 8 MB
  gradient over the network); data read from a shared store at the rate the cores parse it.
- Test sets stay at 50,000 + 10,000 rows for both data sets; visualize's sample is capped at 10,000 points,
  so extrapolating it along val + v2 overstates it; shift also reads a 10% sample of train, and explain's
  refits a 20,000-row sample of train, which the test-row basis does not follow.
- A part with a fixed cost per LR iteration or per tree (scheduling, the driver's L-BFGS step, the
  forest's per-node histograms, which grow with K and depth rather than rows) looks fixed or per-row at
  these sizes; these are the largest sources of error at 100-1000x the measured rows."""


def parse_args(argv=None) -> argparse.Namespace:
    p = bench_parser(__doc__)
    sub = p.add_subparsers(dest="command")
    m = sub.add_parser("measure", help="(internal) one configuration, already pinned")
    m.add_argument("--scale", type=float, required=True)
    m.add_argument("--cores", type=int, required=True)
    m.add_argument("--work", required=True)
    m.add_argument("--json", required=True)
    m.add_argument("--test-factor", type=float, default=5.0)
    m.add_argument("--stages", default=",".join(STAGES))
    add_config_args(m)
    p.add_argument("--scales", default="0.005,0.01", help="train-set fractions (two: small, large)")
    p.add_argument("--cores", default="2,1", help="core counts (pinned to cpus 0..c-1)")
    p.add_argument("--test-factor", type=float, default=5.0,
                   help="val and v2 rows = this x scale x the real sizes (50,000 / 10,000)")
    p.add_argument("--work", default="data/bench/scale_model", help="generated data and runs")
    p.add_argument("--out", default=os.path.join("benchmarks", "results", "scale_model"),
                   help="folder for scale_model.md and scale_model.json")
    p.add_argument("--lock", default="/work/bin/heavy" if os.path.exists("/work/bin/heavy") else "",
                   help="command each configuration runs under (a lock that serialises heavy work; '' for none)")
    p.add_argument("--only", action="append", default=[], metavar="SCALE:CORES",
                   help="run only these configurations (repeatable); saved ones are reused for the fit")
    p.add_argument("--stages", default=",".join(STAGES),
                   help="the stages to run (in pipeline order, from ingest; each needs the ones before it)")
    p.add_argument("--log", action="append", default=[], metavar="FILE",
                   help="this benchmark's console output (repeatable): LR's seconds per iteration, so that its "
                        "first iteration (statistics, block build) is modelled apart from the steady ones")
    p.add_argument("--fit-only", action="store_true", help="fit and print from the JSONs already in --out")
    add_config_args(p)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.command == "measure":
        return measure(args)
    os.chdir(ROOT)
    args.work = os.path.abspath(args.work)
    points_dir = os.path.join(args.out, "points")
    os.makedirs(points_dir, exist_ok=True)
    scales = [float(s) for s in args.scales.split(",")]
    cores = [int(c) for c in args.cores.split(",")]
    if not args.fit_only:
        wanted = [(s, c) for s in scales for c in cores]
        wanted.sort(key=lambda sc: (sc[1] == 1, sc[0]))  # local[2] at both sizes, then local[1]: small first
        for s, c in wanted:
            if args.only and f"{s:g}:{c}" not in args.only:
                continue
            run_configuration(args, s, c, os.path.join(points_dir, f"s{s:g}_c{c}.json"))
    measurements = []
    for name in sorted(os.listdir(points_dir)):
        with open(os.path.join(points_dir, name), encoding="utf-8") as f:
            measurements.append(json.load(f))
    if not measurements:
        raise SystemExit("scale_model: no measurements yet")
    logs = read_iteration_logs(args.log)
    for m in measurements:
        each = logs.get((float(m["scale"]), int(m["cores"])))
        if each and len(each) == (m["models"].get("lr") or {}).get("iterations"):
            m["lr_iteration_seconds"] = each
    command = " ".join(["python", "-m", "benchmarks.scale_model", *(argv if argv is not None else sys.argv[1:])])
    report(measurements, args.out, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())

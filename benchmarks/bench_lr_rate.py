"""Benchmark of LR's loss-evaluation rate against the machine's dgemm, and the levers meant to close the gap.

What it prints, all measured in this one run:

1. ``dgemm``: numpy's float64 matrix product (its bundled OpenBLAS) at 1 and 2 threads (threadpoolctl), on
   the two products one MLlib loss evaluation makes per block of rows (margins: block x D times D x K;
   gradient: K x block times block x D, with block = maxBlockSizeInMB * 2^20 / (8 D) rows) and on a large
   square product. This is the machine's reference rate.
2. For each configuration, one fit in its own JVM (a subprocess, so JVM options and the BLAS library
   differ): MLlib's seconds per L-BFGS iteration from Breeze's per-iteration log timestamps, the first
   iteration excluded (its line search makes several evaluations, after the statistics and block passes);
   the implied rate 4 n D K / (s per iteration), a lower bound on the evaluation rate since an iteration
   makes at least one evaluation; the evaluations themselves (the Spark jobs that ran between the first and
   the last logged iteration: count, median seconds, GFLOP/s); the ratios to dgemm's 2-thread rate on the
   same block shape and on the square; and the BLAS MLlib really used (netlib's instance, and the BLAS
   libraries mapped into the JVM).
3. The configurations: the JDK Vector API path (``VectorBLAS``) on local[2], the baseline; native OpenBLAS
   through JNI (``--native-blas PATH``, never installed system-wide) with 1 thread on local[2], with 2 threads
   on local[1], and with 2 threads and ``spark.task.cpus=2`` on local[2]; then the fastest of those with
   the other block size (``--alt-block-mb``); then the baseline again, to see whether the machine's speed
   drifted during the run. Without ``--native-blas`` the native ones are skipped.

Native OpenBLAS without installing it (Debian/Ubuntu; libgfortran5 too when ``ldd`` says it is missing)::

    mkdir -p /tmp/blas && cd /tmp/blas && apt-get download libopenblas0-pthread libgfortran5 \\
        && for f in *.deb; do dpkg -x "$f" root; done
    python -m benchmarks.bench_lr_rate --native-blas \\
        /tmp/blas/root/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3

The library's folder and its parent go on the driver's library path (``spark.driver.extraLibraryPath``),
which is where ``dpkg -x`` puts libopenblas.so.0 and libgfortran.so.5.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from benchmarks.bench_train import cached_train, generate, mllib_fit
from benchmarks.common import (
    add_shape_args,
    add_work_arg,
    bench_config,
    bench_parser,
    dump,
    print_table,
    spark_session,
)

BASELINE = "vector-l2"
# name -> backend, local[N], spark.task.cpus, OpenBLAS threads (native only)
CONFIGS: dict[str, dict] = {
    "vector-l2": {"backend": "vector", "cores": 2, "task_cpus": 1, "blas_threads": 1},
    "native1-l2": {"backend": "native", "cores": 2, "task_cpus": 1, "blas_threads": 1},
    "native2-l1": {"backend": "native", "cores": 1, "task_cpus": 1, "blas_threads": 2},
    "native2-l2-cpus2": {"backend": "native", "cores": 2, "task_cpus": 2, "blas_threads": 2},
}


def parse_args(argv=None) -> argparse.Namespace:
    p = bench_parser(__doc__)
    p.add_argument("--rows", type=int, default=20_000, help="train rows n")
    p.add_argument("--val-rows", type=int, default=1_000, help="validation rows (only to check the fits agree)")
    add_shape_args(p)
    p.add_argument("--reg", type=float, default=1e-4, help="MLlib regParam")
    p.add_argument("--iters", type=int, default=6, help="L-BFGS iterations per fit (the first is not timed)")
    p.add_argument("--block-mb", type=float, default=1.0, help="maxBlockSizeInMB of the backend configurations")
    p.add_argument("--alt-block-mb", type=float, default=4.0,
                   help="the block size tried on the fastest backend (0: skip)")
    p.add_argument("--partitions", type=int, default=0,
                   help="partitions of the cached train split (0: one per task slot)")
    p.add_argument("--configs", default=",".join(CONFIGS), help=f"which configurations, of {', '.join(CONFIGS)}")
    p.add_argument("--no-baseline-again", dest="baseline_again", action="store_false",
                   help="do not run the baseline a second time at the end (the drift check)")
    p.add_argument("--native-blas", metavar="PATH",
                   help="a native libblas.so.3 (e.g. Debian's openblas-pthread one, extracted with dpkg -x)")
    p.add_argument("--square", type=int, default=4096, help="side of the square dgemm reference")
    p.add_argument("--driver-memory", "--memory", dest="driver_memory", default="6g", help="spark.driver.memory")
    p.add_argument("--config-timeout", type=int, default=900, help="seconds before a configuration's JVM is killed")
    add_work_arg(p, "/tmp/gap-spark-bench", "generated rows (cached between runs)")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--child", help=argparse.SUPPRESS)  # internal: one configuration's fit, from a JSON spec
    return p.parse_args(argv)


# --------------------------------------------------------------------------------------------------
# The reference: numpy dgemm
# --------------------------------------------------------------------------------------------------

def block_rows(block_mb: float, dim: int) -> int:
    """Rows in one of MLlib's blocks: maxBlockSizeInMB * 2^20 bytes of float64 rows of D features."""
    return max(1, int(block_mb * 2**20 / (8 * dim)))


def gemm_gflops(a: np.ndarray, b: np.ndarray, min_seconds: float = 1.0, min_calls: int = 3) -> float:
    """GFLOP/s of ``a @ b`` (median call time, after one warm-up call)."""
    out = np.empty((a.shape[0], b.shape[1]), dtype=np.result_type(a, b))
    np.matmul(a, b, out=out)
    times: list[float] = []
    while sum(times) < min_seconds or len(times) < min_calls:
        start = time.perf_counter()
        np.matmul(a, b, out=out)
        times.append(time.perf_counter() - start)
    return 2.0 * a.shape[0] * a.shape[1] * b.shape[1] / statistics.median(times) / 1e9


def dgemm_reference(dim: int, classes: int, blocks: list[float], square: int) -> dict:
    """float64 dgemm GFLOP/s at 1 and 2 threads: MLlib's two products per block size, and a square product."""
    from threadpoolctl import threadpool_info, threadpool_limits

    rng = np.random.default_rng(0)
    w = rng.standard_normal((classes, dim))  # the K x D coefficients
    sq_a, sq_b = rng.standard_normal((square, square)), rng.standard_normal((square, square))
    blas = [f"{i.get('internal_api')} {i.get('version')} ({i.get('threading_layer')})"
            for i in threadpool_info() if i.get("user_api") == "blas"]
    out: dict = {"numpy_blas": blas, "blocks": {}, "square": {}, "threads_seen": {}}
    for threads in (1, 2):
        with threadpool_limits(limits=threads, user_api="blas"):
            out["threads_seen"][threads] = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
            for mb in blocks:
                r = block_rows(mb, dim)
                x = rng.standard_normal((r, dim))
                mult = rng.standard_normal((r, classes))
                fwd = gemm_gflops(x, w.T)  # margins: block x D times D x K
                grad = gemm_gflops(mult.T, x)  # gradient: K x block times block x D
                pair = 2.0 / (1.0 / fwd + 1.0 / grad)  # both products, equal flops: one evaluation's mix
                out["blocks"].setdefault(mb, {})[threads] = {"rows": r, "margins": fwd, "gradient": grad, "pair": pair}
            out["square"][threads] = gemm_gflops(sq_a, sq_b, min_seconds=2.0, min_calls=2)
    return out


def print_dgemm(ref: dict, dim: int, classes: int, square: int) -> None:
    print(f"\n== numpy dgemm, float64 ({'; '.join(ref['numpy_blas']) or 'BLAS unknown'}; threads seen by "
          f"threadpoolctl: {ref['threads_seen']})")
    rows = []
    for mb, by_threads in ref["blocks"].items():
        r = by_threads[1]["rows"]
        for what, label in (("margins", f"{r} x {dim} @ {dim} x {classes}"),
                            ("gradient", f"{classes} x {r} @ {r} x {dim}"), ("pair", "both (harmonic mean)")):
            rows.append({"product": f"{mb:g} MB block: {label}", "1 thread GFLOP/s": by_threads[1][what],
                         "2 threads GFLOP/s": by_threads[2][what]})
    rows.append({"product": f"square {square} x {square} @ {square} x {square}",
                 "1 thread GFLOP/s": ref["square"][1], "2 threads GFLOP/s": ref["square"][2]})
    print_table(rows, ["product", "1 thread GFLOP/s", "2 threads GFLOP/s"])


# --------------------------------------------------------------------------------------------------
# One configuration, in its own JVM
# --------------------------------------------------------------------------------------------------

def child_env(spec: dict) -> dict:
    env = dict(os.environ)
    env["OPENBLAS_NUM_THREADS"] = str(spec["blas_threads"])  # read by OpenBLAS when the JVM loads it
    return env


def child_conf(spec: dict) -> dict:
    conf: dict = {"spark.sql.shuffle.partitions": spec["cores"], "spark.task.cpus": spec["task_cpus"]}
    if spec["backend"] == "native":
        lib = os.path.abspath(spec["native_blas"])
        folder = os.path.dirname(lib)
        conf["spark.driver.extraJavaOptions"] = f"-Ddev.ludovic.netlib.blas.nativeLibPath={lib}"
        conf["spark.driver.extraLibraryPath"] = f"{folder}:{os.path.dirname(folder)}"
    else:  # the Vector API path even where a libblas.so.3 is installed
        conf["spark.driver.extraJavaOptions"] = "-Ddev.ludovic.netlib.blas.allowNative=false"
    return conf


def jvm_blas(spark) -> dict:
    """The BLAS shared libraries mapped into the driver JVM and its OPENBLAS_NUM_THREADS (from /proc)."""
    try:
        pid = int(spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid())  # noqa: SLF001
        with open(f"/proc/{pid}/maps", encoding="utf-8") as f:
            paths = {line.split()[-1] for line in f if "blas" in line.lower() and "/" in line}
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = dict(item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item)
        return {"mapped": sorted(paths), "jvm_openblas_threads": env.get(b"OPENBLAS_NUM_THREADS", b"unset").decode()}
    except Exception:  # noqa: BLE001 - a diagnostic only
        return {"mapped": ["unknown"], "jvm_openblas_threads": "unknown"}


def job_times(spark, group: str) -> list[tuple[float, float, str]]:
    """``(submitted, completed, name)`` in epoch seconds of each finished Spark job of ``group``."""
    sc = spark.sparkContext
    store = sc._jsc.sc().statusStore()  # noqa: SLF001
    jobs = []
    for job_id in sc.statusTracker().getJobIdsForGroup(group):
        data = store.job(int(job_id))
        submitted, completed = data.submissionTime(), data.completionTime()
        if submitted.isDefined() and completed.isDefined():
            jobs.append((submitted.get().getTime() / 1000.0, completed.get().getTime() / 1000.0, str(data.name())))
    return sorted(jobs)


def evaluation_stats(stamps: list[float], jobs: list[tuple[float, float, str]]) -> dict:
    """The jobs run between the first and the last logged iteration: MLlib's loss evaluations."""
    if len(stamps) < 2:
        return {"evaluations": 0}
    inside = [j for j in jobs if j[0] > stamps[0] and j[1] <= stamps[-1] + 0.5]
    durations = [end - start for start, end, _ in inside]
    return {"evaluations": len(inside), "evals_per_iter": len(inside) / (len(stamps) - 1),
            "s_per_eval": statistics.median(durations) if durations else float("nan"),
            "job_names": sorted({name for _, _, name in inside})}


def run_child(spec: dict) -> dict:
    from gap_spark.core.progress import blas_implementation
    from gap_spark.ops.features import fit_feature_model, with_label_metadata

    config = bench_config(cores=spec["cores"], driver_memory=spec["driver_memory"], conf=child_conf(spec))
    spark = spark_session(config, f"bench-lr-rate-{spec['name']}")
    blas = blas_implementation(spark)
    slots = spec["cores"] // spec["task_cpus"]
    partitions = spec["partitions"] or slots
    train = cached_train(spark, spec["train_path"], partitions, "MEMORY_AND_DISK")
    val = spark.read.parquet("file://" + os.path.abspath(spec["val_path"])).select("label", "features")
    features = fit_feature_model(train)
    train_vec = features.transform(with_label_metadata(train, spec["classes"])).select("label", "features_scaled")
    val_vec = features.transform(with_label_metadata(val, spec["classes"])).select("label", "features_scaled")
    group = f"lr-rate-{spec['name']}"
    spark.sparkContext.setJobGroup(group, "bench_lr_rate fit")
    fit = mllib_fit(spark, train_vec, val_vec, spec["classes"], spec["reg"], spec["iters"], spec["block_mb"])
    stamps = fit.pop("iteration_times")
    out = {**spec, **fit, "blas": blas, **jvm_blas(spark), "partitions": partitions, "slots": slots,
           "timed_iterations": max(0, len(stamps) - 1), **evaluation_stats(stamps, job_times(spark, group))}
    train.unpersist()
    spark.stop()
    return out


def run_config(name: str, spec: dict, timeout: int) -> dict:
    """Run one configuration in a fresh Python + JVM and return its results (``error`` on failure)."""
    print(f"\n-- {name}: {spec['backend']} BLAS, local[{spec['cores']}], spark.task.cpus={spec['task_cpus']}, "
          f"OPENBLAS_NUM_THREADS={spec['blas_threads']}, maxBlockSizeInMB={spec['block_mb']:g}", flush=True)
    fd, out_path = tempfile.mkstemp(prefix="bench-lr-rate-", suffix=".json")
    os.close(fd)
    spec = {**spec, "name": name, "out": out_path}
    cmd = [sys.executable, "-m", "benchmarks.bench_lr_rate", "--child", json.dumps(spec)]
    started = time.time()
    try:
        proc = subprocess.run(cmd, env=child_env(spec), timeout=timeout, check=False)
        if proc.returncode != 0:
            return {**spec, "error": f"exit status {proc.returncode}"}
        with open(out_path, encoding="utf-8") as f:
            result = json.load(f)
    except subprocess.TimeoutExpired:
        return {**spec, "error": f"killed after {timeout} s"}
    finally:
        os.remove(out_path)
    result["process_s"] = time.time() - started
    print(f"   BLAS {result['blas']}; mapped: {', '.join(result['mapped']) or 'none'}; JVM's OPENBLAS_NUM_THREADS "
          f"{result['jvm_openblas_threads']}; "
          f"{result['s_per_iter_log']:.2f} s/iteration over {result['timed_iterations']} iterations; "
          f"{result['evaluations']} evaluations ({result.get('s_per_eval', float('nan')):.2f} s median; jobs "
          f"{', '.join(result.get('job_names', []))}); "
          f"first iteration after {result['first_iteration_after_s']:.1f} s; "
          f"loss {result['loss']:.6f}; process {result['process_s']:.0f} s", flush=True)
    return result


# --------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------

def summary_rows(results: list[dict], ref: dict, tflop: float) -> list[dict]:
    base = next((r for r in results if r["name"] == BASELINE and "error" not in r), None)
    rows = []
    for r in results:
        if "error" in r:
            rows.append({"config": r["name"], "BLAS": r["error"]})
            continue
        dgemm_block = ref["blocks"][r["block_mb"]][2]["pair"]
        per_iter, per_eval = r["s_per_iter_log"], r.get("s_per_eval", float("nan"))
        rows.append({
            "config": r["name"], "BLAS": r["blas"].rsplit(".", 1)[-1],
            "block MB": r["block_mb"], "parts": r["partitions"],
            "s/iter": per_iter, "evals/iter": r.get("evals_per_iter", float("nan")),
            "s/eval": per_eval, "GFLOP/s (iter, lower bound)": tflop * 1e3 / per_iter,
            "GFLOP/s (eval)": tflop * 1e3 / per_eval,
            "eval / dgemm-2t block": tflop * 1e3 / per_eval / dgemm_block,
            "eval / dgemm-2t square": tflop * 1e3 / per_eval / ref["square"][2],
            "s/iter vs baseline": per_iter / base["s_per_iter_log"] if base else float("nan"),
            "loss": f"{r['loss']:.6f}",
        })
    return rows


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        spec = json.loads(args.child)
        dump(spec["out"], run_child(spec))
        return 0
    names = [c for c in args.configs.split(",") if c]
    unknown = [c for c in names if c not in CONFIGS]
    if unknown:
        print(f"error: unknown configuration(s) {', '.join(unknown)}; choose from {', '.join(CONFIGS)}",
              file=sys.stderr)
        return 2
    if args.native_blas and not os.path.isfile(args.native_blas):
        print(f"error: --native-blas {args.native_blas}: no such file", file=sys.stderr)
        return 2
    load = os.getloadavg()[0]
    tflop = 4.0 * args.rows * args.dim * args.classes / 1e12
    print(f"machine: {os.cpu_count()} CPUs, load average {load:.1f} at start; {args.rows} x {args.dim} x "
          f"{args.classes} classes: one loss evaluation is 4 n D K = {tflop * 1e3:.1f} GFLOP; "
          f"{args.iters} iterations a fit, the first not timed")
    data = generate(args.rows, args.val_rows, args.dim, args.classes, args.seed, args.work)
    blocks = [args.block_mb] + ([args.alt_block_mb] if args.alt_block_mb and args.alt_block_mb != args.block_mb else [])
    ref = dgemm_reference(args.dim, args.classes, blocks, args.square)
    print_dgemm(ref, args.dim, args.classes, args.square)

    if not args.native_blas and any(CONFIGS[c]["backend"] == "native" for c in names):
        print("\nnative BLAS configurations skipped: pass --native-blas PATH (a libblas.so.3; see --help)")
        names = [c for c in names if CONFIGS[c]["backend"] != "native"]
    common = {"train_path": data["train"][0], "val_path": data["val"][0], "classes": args.classes,
              "reg": args.reg, "iters": args.iters, "partitions": args.partitions,
              "driver_memory": args.driver_memory, "native_blas": args.native_blas, "block_mb": args.block_mb}
    results = [run_config(name, {**common, **CONFIGS[name]}, args.config_timeout) for name in names]
    done = [r for r in results if "error" not in r]
    if done and args.alt_block_mb and args.alt_block_mb != args.block_mb:
        best = min(done, key=lambda r: r["s_per_iter_log"])
        alt = {**common, **CONFIGS[best["name"]], "block_mb": args.alt_block_mb}
        results.append(run_config(f"{best['name']}@{args.alt_block_mb:g}MB", alt, args.config_timeout))
    if args.baseline_again and BASELINE in names and len(results) > 1:  # did the machine change under the run?
        results.append(run_config(f"{BASELINE} (again)", {**common, **CONFIGS[BASELINE]}, args.config_timeout))

    end_load = os.getloadavg()[0]
    print(f"\n== MLlib LR, {args.rows} x {args.dim} x {args.classes}: seconds per L-BFGS iteration (Breeze's log, "
          f"first iteration excluded), evaluations (Spark jobs between the first and last logged iteration), and "
          f"their rate against numpy dgemm at 2 threads (block: both products at that block size; square "
          f"{args.square}: {ref['square'][2]:.1f} GFLOP/s)")
    print_table(summary_rows(results, ref, tflop),
                ["config", "BLAS", "block MB", "parts", "s/iter", "evals/iter", "s/eval", "GFLOP/s (iter, lower bound)",
                 "GFLOP/s (eval)", "eval / dgemm-2t block", "eval / dgemm-2t square", "s/iter vs baseline", "loss"])
    print(f"load average: {load:.1f} at start, {end_load:.1f} at the end (above ~2 the machine was shared)")
    if args.json:
        dump(args.json, {"args": vars(args), "dgemm": ref, "configs": results, "load_average": [load, end_load]})
    return 0


if __name__ == "__main__":
    sys.exit(main())

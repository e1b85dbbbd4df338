"""Benchmark: UMAP and t-SNE on 10k points x 50 dims (PCA from 1024), as `gap-spark visualize` runs them.

Generates val and v2 feature vectors with gap_spark.ops.generator (half each, 1000 classes), reduces them with
PCA, then times gap_spark.ops.embedding.embed for UMAP and openTSNE with at most --threads threads. In the same
run it times two baselines on the same PCA output: scikit-learn's Barnes-Hut TSNE and PCA alone, and
prints the ratios. Target: 2 minutes or less for each of UMAP and t-SNE on 2 cores.

    python -m benchmarks.bench_embed               # 10k points, 2 threads
    python -m benchmarks.bench_embed --points 3000 --no-sklearn

UMAP's first call in a fresh process includes numba's JIT compilation (cached on disk afterwards, see
gap_spark.ops.embedding.prepare_numba); the script reports a cold and a warm UMAP time.
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time

import numpy as np

from benchmarks.common import add_shape_args, bench_parser, split_matrix


def make_features(points: int, dim: int, classes: int, seed: int) -> np.ndarray:
    """Half val, half v2 rows of the generator (with its default shift), as ``gap-spark synth`` writes them."""
    from gap_spark.ops.generator import World
    from gap_spark.stages.synth import synth_settings

    spec = synth_settings(train_rows=1, val_rows=points // 2, v2_rows=points - points // 2, dim=dim,
                          classes=classes, seed=seed)
    world = World(spec)
    return np.vstack([split_matrix(world, split)[0] for split in ("val", "v2")])


def load_average() -> str:
    try:
        return "load average " + " / ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "load average unknown"


class Stopwatch:
    """Wall and CPU seconds (all threads of this process) of named steps."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def run(self, name: str, func, *args, **kwargs):
        wall, cpu = time.perf_counter(), time.process_time()
        out = func(*args, **kwargs)
        self.wall[name] = time.perf_counter() - wall
        self.cpu[name] = time.process_time() - cpu
        return out


def main(argv=None) -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--points", type=int, default=10_000)
    add_shape_args(parser, seed=17)
    parser.add_argument("--pca-dims", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-sklearn", action="store_true", help="skip the scikit-learn TSNE baseline")
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args(argv)

    from threadpoolctl import threadpool_limits

    from gap_spark.ops.embedding import embed, prepare_numba

    prepare_numba(args.threads)
    watch = Stopwatch()
    features = watch.run("generate", make_features, args.points, args.dim, args.classes, args.seed)
    print(f"{features.shape[0]:,} x {features.shape[1]} features; python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs visible, threads={args.threads}, {load_average()} at start", flush=True)
    common = {"pca_dims": args.pca_dims, "seed": args.seed, "threads": args.threads}

    # Baseline 1: PCA alone, the cheapest embedding and what UMAP and t-SNE start from.
    watch.run("pca", embed, features, methods=(), **common)
    # UMAP cold (numba JIT unless its disk cache is warm), UMAP warm, then openTSNE. embed() times the
    # method alone (without its PCA) in .seconds; the Stopwatch's CPU seconds cover the whole call.
    cold = watch.run("umap_cold", embed, features, methods=("umap",), **common)
    warm = watch.run("umap", embed, features, methods=("umap",), **common)
    tsne = watch.run("tsne", embed, features, methods=("tsne",), **common)
    method_wall = {"pca": watch.wall["pca"], "umap_cold": cold.seconds["umap"], "umap": warm.seconds["umap"],
                   "tsne": tsne.seconds["tsne"]}
    same = bool(np.allclose(cold.coords["umap"], warm.coords["umap"]))

    if not args.no_sklearn:
        # Baseline 2: scikit-learn's Barnes-Hut t-SNE on the same 50 PCA components.
        from sklearn.decomposition import PCA
        from sklearn.manifold import TSNE as SkTSNE

        with threadpool_limits(limits=args.threads):
            reduced = PCA(n_components=args.pca_dims, random_state=args.seed).fit_transform(features)
            sk = SkTSNE(n_components=2, perplexity=30.0, init="pca", random_state=args.seed, n_jobs=args.threads)
            watch.run("sklearn_tsne", sk.fit_transform, reduced.astype(np.float32))
        method_wall["sklearn_tsne"] = watch.wall["sklearn_tsne"]

    print()
    print(f"{'step':<30}{'wall s':>9}{'CPU s':>9}{'wall / PCA':>12}{'wall / sklearn t-SNE':>22}")
    labels = {"pca": f"PCA {args.dim}->{args.pca_dims} only (baseline)", "umap_cold": "UMAP, cold (incl. JIT)",
              "umap": "UMAP, warm",
              "tsne": "t-SNE (openTSNE)", "sklearn_tsne": "t-SNE (sklearn, baseline)"}
    for name, label in labels.items():
        if name not in method_wall:
            continue
        seconds = method_wall[name]
        vs_sk = f"{seconds / method_wall['sklearn_tsne']:.2f}x" if "sklearn_tsne" in method_wall else "-"
        print(f"{label:<30}{seconds:>9.1f}{watch.cpu[name]:>9.1f}{seconds / method_wall['pca']:>11.1f}x{vs_sk:>22}")
    print(f"\n{load_average()} at the end; UMAP identical across the two runs (fixed seed): {same}")
    target = 120.0
    verdict = {m: method_wall[m] <= target for m in ("umap_cold", "umap", "tsne")}
    print(f"target {target:.0f} s each (wall): "
          + ", ".join(f"{m} {'OK' if ok else 'OVER'}" for m, ok in verdict.items()))
    # On a shared, busy machine wall time overstates the cost; CPU seconds bound the wall time the same step
    # takes on an idle machine (single-threaded steps: equal; two threads: at most equal).
    cpu_ok = {m: watch.cpu[m] <= target for m in ("umap_cold", "umap", "tsne")}
    print(f"target {target:.0f} s each (CPU seconds, an upper bound for an idle machine's wall time): "
          + ", ".join(f"{m} {'OK' if ok else 'OVER'}" for m, ok in cpu_ok.items()))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:  # a local benchmark output, not a pipeline path
            json.dump({"points": args.points, "dim": args.dim, "pca_dims": args.pca_dims, "threads": args.threads,
                       "wall_seconds": method_wall, "cpu_seconds": watch.cpu, "umap_deterministic": same,
                       "load_average_end": os.getloadavg()}, f, indent=2)
    return 0 if all(verdict.values()) or all(cpu_ok.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

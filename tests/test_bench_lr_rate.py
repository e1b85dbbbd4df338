"""bench_lr_rate's pure parts: MLlib's block shape, which jobs count as evaluations, the JVM options per backend."""
from __future__ import annotations

import math

from benchmarks.bench_lr_rate import CONFIGS, block_rows, child_conf, child_env, evaluation_stats


def test_block_rows_is_mllib_block_of_float64_rows():
    assert block_rows(1.0, 1024) == 128
    assert block_rows(4.0, 1024) == 512
    assert block_rows(1e-6, 1024) == 1


def test_only_jobs_between_the_first_and_last_logged_iteration_are_evaluations():
    stamps = [10.0, 12.0, 14.0, 16.0]
    jobs = [(1.0, 3.0, "stats"), (5.0, 9.9, "first iteration's line search"),
            (10.1, 11.9, "eval"), (12.1, 13.0, "eval"), (13.0, 13.9, "eval"), (14.1, 15.9, "eval"),
            (16.5, 17.0, "validation")]
    got = evaluation_stats(stamps, jobs)
    assert got["evaluations"] == 4
    assert math.isclose(got["evals_per_iter"], 4 / 3)
    assert math.isclose(got["s_per_eval"], (0.9 + 1.8) / 2)  # median of 1.8, 0.9, 0.9, 1.8
    assert got["job_names"] == ["eval"]
    assert evaluation_stats([10.0], jobs) == {"evaluations": 0}


def test_vector_config_forbids_native_and_native_config_points_netlib_at_the_library(tmp_path):
    lib = tmp_path / "openblas-pthread" / "libblas.so.3"
    vector = child_conf({**CONFIGS["vector-l2"]})
    assert "allowNative=false" in vector["spark.driver.extraJavaOptions"]
    native = child_conf({**CONFIGS["native2-l2-cpus2"], "native_blas": str(lib)})
    assert native["spark.driver.extraJavaOptions"] == f"-Ddev.ludovic.netlib.blas.nativeLibPath={lib}"
    assert native["spark.driver.extraLibraryPath"].split(":") == [str(lib.parent), str(tmp_path)]
    assert native["spark.task.cpus"] == 2
    assert child_env(CONFIGS["native2-l1"])["OPENBLAS_NUM_THREADS"] == "2"

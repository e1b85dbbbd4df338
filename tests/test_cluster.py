"""On a real standalone cluster (separate master, worker and executor JVMs, Python workers), through
spark-submit with the zipped package, from a working directory that is not the repository: the
pipeline, and the faults a scheduled run meets (a worker lost mid-ingest and mid-training, the driver
killed mid-ingest, a corrupt or missing input)."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
from pyspark.testing import assertDataFrameEqual

from gap_spark import fs
from gap_spark.dataset import read_manifest, read_split
from tests.cluster import REPO, running_cluster

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

# Big enough that ingest and training take many tasks (so a kill lands mid-stage), small for CI.
CLUSTER_SYNTH = {"synth.train_rows": 24000, "synth.val_rows": 2000, "synth.v2_rows": 1000, "synth.dim": 96,
                 "synth.classes": 20, "synth.superclass_size": 5, "synth.seed": 21, "synth.workers": 1,
                 "ingest.classes": 20, "ingest.target_file_mb": 1}


def write_config(path: Path, root: Path, extra: dict | None = None) -> str:
    """A pipeline config file with paths under ``root`` (a path with spaces, given as file:// URIs)."""
    import yaml

    tree: dict = {"paths": {"raw": f"file://{root}/raw", "data": f"file://{root}/dataset",
                            "run": f"file://{root}/runs/latest"}}
    for key, value in {**CLUSTER_SYNTH, **(extra or {})}.items():
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    path.write_text(yaml.safe_dump(tree))
    return str(path)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with running_cluster(tmp_path_factory.mktemp("cluster"), workers=2, cores=1, memory="2g") as c:
        yield c


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    from gap_spark.package import build_zip

    return build_zip(str(tmp_path_factory.mktemp("dist") / "gap_spark.zip"))


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """Raw CSVs for the cluster tests, in a directory whose name has a space."""
    from gap_spark.config import load_config
    from gap_spark.paths import Paths
    from gap_spark.synth import run_synth

    root = tmp_path_factory.mktemp("with space")
    config = load_config(sets=[f"{k}={v}" for k, v in CLUSTER_SYNTH.items()] + [f"paths.raw={root}/raw"])
    run_synth(None, config, Paths.from_config(config))
    return root / "raw"


def log_text(proc) -> str:
    return Path(proc.log_path).read_text(errors="replace")


def wait_for(predicate, timeout: float, what: str, proc=None) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"job ended (rc={proc.returncode}) before {what}:\n{log_text(proc)[-3000:]}")
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def staged_parts(root: Path) -> int:
    return sum(1 for p in root.glob("dataset.staging-*/split=train/part-*.parquet"))


def ingest_args(config: str, raw: Path, root: Path) -> list[str]:
    return ["--config", config, "--raw", f"file://{raw}", "--out", f"file://{root}/dataset"]


def test_worker_lost_mid_ingest_loses_no_row(cluster, package, generated, tmp_path):
    root = tmp_path / "run a"
    root.mkdir()
    config = write_config(tmp_path / "c.yaml", root)
    proc = cluster.submit(str(REPO / "jobs" / "ingest.py"), ingest_args(config, generated, root), cwd=tmp_path,
                          py_files=package, background=True)
    wait_for(lambda: staged_parts(root) >= 1, 600, "the first train part file", proc)
    cluster.kill("worker1")
    assert proc.wait(timeout=900) == 0, log_text(proc)[-3000:]
    manifest = read_manifest(str(root / "dataset"))
    train = manifest["splits"]["train"]
    assert train["rows_read"] == 24000 == train["rows_written"] + train["rows_quarantined"]
    assert train["rows_quarantined"] == 0
    assert not list((root / "dataset" / "split=train").glob("_tmp-*"))
    # Restore the lost worker for the tests that follow.
    cluster._start("worker1", ["org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--cores", "1",
                               "--memory", "2g", "--work-dir", str(cluster.work / "worker1b"), cluster.url])
    wait_for(lambda: cluster.alive_workers() == 2, 120, "the replacement worker")


def test_driver_killed_mid_ingest_leaves_nothing_readable_and_rerun_is_complete(cluster, package, generated,
                                                                               tmp_path, spark):
    root = tmp_path / "run b"
    root.mkdir()
    config = write_config(tmp_path / "c.yaml", root)
    args = ingest_args(config, generated, root)
    proc = cluster.submit(str(REPO / "jobs" / "ingest.py"), args, cwd=tmp_path, py_files=package, background=True)
    wait_for(lambda: staged_parts(root) >= 1, 600, "the first train part file", proc)
    cluster.processes["driver"] = proc
    cluster.kill("driver")
    del cluster.processes["driver"]
    assert not (root / "dataset" / "_manifest.json").exists()
    from gap_spark.errors import DatasetError

    with pytest.raises(DatasetError):
        read_manifest(str(root / "dataset"))

    rerun = cluster.submit(str(REPO / "jobs" / "ingest.py"), args, cwd=tmp_path, py_files=package)
    assert rerun.returncode == 0, log_text(rerun)[-3000:]
    assert not list(root.glob("dataset.staging-*"))
    manifest = read_manifest(str(root / "dataset"))
    assert manifest["splits"]["train"]["rows_written"] == 24000

    # Identical to a clean local ingest of the same files.
    from gap_spark.config import load_config
    from gap_spark.ingest import run_ingest
    from gap_spark.paths import Paths

    local = load_config(config, sets=[f"paths.raw={generated}", f"paths.data={tmp_path}/local"])
    run_ingest(spark, local, Paths.from_config(local))
    for split in ("train", "val", "v2"):
        assertDataFrameEqual(read_split(spark, str(root / "dataset"), split),
                             read_split(spark, f"{tmp_path}/local", split))


def test_missing_and_corrupt_inputs_exit_non_zero_naming_the_input(cluster, package, generated, tmp_path):
    root = tmp_path / "run c"
    root.mkdir()
    config = write_config(tmp_path / "c.yaml", root)
    missing = cluster.submit(str(REPO / "jobs" / "ingest.py"),
                             ["--config", config, "--raw", f"file://{root}/nothing-here"], cwd=tmp_path,
                             py_files=package)
    text = log_text(missing)
    assert missing.returncode == 2 and "train CSV not found" in text and "nothing-here" in text
    assert "Traceback" not in text and "Py4JJavaError" not in text

    # A dataset whose Parquet part is truncated: training must say which input is broken.
    ok = cluster.submit(str(REPO / "jobs" / "ingest.py"), ingest_args(config, generated, root), cwd=tmp_path,
                        py_files=package)
    assert ok.returncode == 0, log_text(ok)[-3000:]
    victim = sorted((root / "dataset" / "split=train").glob("part-*.parquet"))[0]
    victim.write_bytes(victim.read_bytes()[:100])
    broken = cluster.submit(str(REPO / "jobs" / "train.py"),
                            ["--config", config, "--data", f"file://{root}/dataset", "--run", f"file://{root}/run",
                             "--models", "lr", "--set", "train.lr.max_iter=2"], cwd=tmp_path, py_files=package)
    text = log_text(broken)
    assert broken.returncode != 0
    assert "error:" in text and victim.name in text
    assert "Traceback" not in text and "\tat org.apache" not in text

"""notebooks/explore_gap.ipynb, executed top to bottom by nbclient in a Jupyter kernel running this venv's
python, on tiny data the notebook generates itself (its parameters cell is rewritten in memory, as papermill
would inject parameters). The cells' outputs are checked against the files the run wrote, and the kernel
must leave no process behind (its Spark JVM and Python workers included)."""
from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path

import nbformat
import psutil
import pytest
import yaml
from nbclient import NotebookClient

from tests.cluster import REPO

pytestmark = pytest.mark.slow

NOTEBOOK = REPO / "notebooks" / "explore_gap.ipynb"
KERNEL = "gap-spark-test-venv"

# Tiny sizes (those of tests/test_pipeline.py) plus a small local session, so the notebook runs in a minute.
TINY_CONFIG = {
    "spark": {"master": "local[2]",
              "conf": {"spark.ui.enabled": "false", "spark.driver.memory": "1g",
                       "spark.sql.shuffle.partitions": "2", "spark.default.parallelism": "2"}},
    "synth": {"train_rows": 1600, "val_rows": 800, "v2_rows": 800, "dim": 16, "classes": 8, "superclass_size": 4,
              "seed": 3, "workers": 1},
    "ingest": {"classes": 8},
    # One model keeps it short; the cluster and pipeline tests cover RF.
    "train": {"models": ["lr"], "lr": {"max_iter": 30}},
    "evaluate": {"bootstrap_replicates": 10},
    "shift": {"domain_sample_per_set": 400, "domain_pca_k": 4, "domain_folds": 2, "domain_max_iter": 5,
              "histogram_bins": 200},
    "visualize": {"sample_size": 300, "classes": 4, "pca_dims": 8, "methods": ["tsne"]},
}


def kernel_spec(root: Path) -> Path:
    """A kernelspec whose argv is this interpreter (the venv's python), found first through JUPYTER_PATH, so
    no python3 kernel installed elsewhere (user or system) can be picked instead."""
    spec = root / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "gap-spark venv", "language": "python"}))
    return root


def with_parameters(nb, values: dict):
    """Replace the source of the cell tagged "parameters" by these assignments (papermill-style)."""
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, "the notebook needs exactly one cell tagged 'parameters'"
    cells[0].source = "\n".join(f"{name} = {value!r}" for name, value in values.items())
    return nb


def text_of(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")


def code_cell(nb, fragment: str):
    matches = [c for c in nb.cells if c.cell_type == "code" and fragment in c.source]
    assert len(matches) == 1, fragment
    return matches[0]


def test_notebook_runs_top_to_bottom_on_tiny_data(tmp_path, monkeypatch):
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(yaml.safe_dump(TINY_CONFIG))
    run = tmp_path / "runs" / "explore"
    nb = with_parameters(nbformat.read(str(NOTEBOOK), as_version=4), {
        "RAW": f"{tmp_path}/raw", "DATA": f"{tmp_path}/dataset", "RUN": str(run), "GENERATE": True,
        "CONFIG_FILE": str(config_file), "SETS": [], "STAGES": None})
    monkeypatch.setenv("JUPYTER_PATH", str(kernel_spec(tmp_path / "jupyter")))
    # The kernel starts its own Spark; nothing of a session this test process may hold leaks into it.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PYSPARK_GATEWAY") and k not in ("SPARK_CONF_DIR", "PYSPARK_PYTHON")}
    env["IPYTHONDIR"] = str(tmp_path / "ipython")

    seen: dict[int, tuple[psutil.Process, str]] = {}
    kernel: dict = {}

    def record_processes(**_):
        # Everything the kernel started (spark-submit, the JVM, Spark's Python workers) after each cell.
        proc = psutil.Process(client.km.provisioner.pid)
        kernel.setdefault("cmdline", proc.cmdline())
        for child in proc.children(recursive=True):
            try:
                seen.setdefault(child.pid, (child, child.name()))
            except psutil.NoSuchProcess:
                pass  # a short-lived helper (e.g. java -version) already gone

    # The notebook's cwd is a scratch folder: nothing (spark-warehouse, derby.log) lands in the repository.
    client = NotebookClient(nb, kernel_name=KERNEL, timeout=600, startup_timeout=120,
                            resources={"metadata": {"path": str(tmp_path)}}, on_cell_executed=record_processes)
    try:
        client.execute(env=env)  # raises CellExecutionError, naming the cell, if any cell fails
    finally:
        # nbclient owns the kernel and has shut it down; whatever it started must go with it.
        _gone, alive = psutil.wait_procs([proc for proc, _ in seen.values()], timeout=60)
        for proc in alive:
            proc.kill()
    assert not alive, f"left behind by the kernel: {[(p.pid, seen[p.pid][1]) for p in alive]}"
    assert kernel["cmdline"][0] == sys.executable, kernel["cmdline"]
    assert any(name == "java" for _, name in seen.values()), "the kernel never started Spark's JVM"

    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert not [o for o in cell.outputs if o.output_type == "error"], index
            assert not [o for o in cell.outputs if o.output_type == "stream" and o.name == "stderr"
                        and "Traceback" in o.text], index

    # The session cell shows the notebook's SparkSession, on the configured master.
    session = code_cell(nb, "get_spark(")
    html = "".join(o.get("data", {}).get("text/html", "") for o in session.outputs)
    assert "SparkSession" in html and "local[2]" in html

    # The pipeline cell prints the pipeline's summary: every stage ran.
    summary = json.loads(text_of(code_cell(nb, "run_pipeline(")))
    assert [s for s, v in summary["stages"].items() if v["status"] == "done"] == \
        ["synth", "ingest", "train", "evaluate", "shift", "explain", "visualize", "report"]
    assert summary["report"].endswith("report.html") and (run / "report.html").exists()

    # The dataset cell reads the manifest and the Parquet splits.
    dataset = text_of(code_cell(nb, "read_dataset("))
    assert "D=16  K=8" in dataset
    # ingest sets 2% of the train CSV's rows apart as the selection split: 8 classes x 200 rows x 2%.
    for split, rows in (("train", 1568), ("select", 32), ("val", 800), ("v2", 800)):
        assert f"{split:5s} rows={rows:>8}  quarantined=0" in dataset
    assert "|label|count|" in dataset  # the v2 label counts table from Spark's show()

    # The headline cell prints exactly metrics.json's numbers.
    metrics = json.loads((run / "metrics.json").read_text())
    headline = text_of(code_cell(nb, "metrics.json"))
    assert list(metrics["models"]) == ["lr"]
    for name, m in metrics["models"].items():
        assert f"{name}: val {m['val']['accuracy']:.2%}  v2 {m['v2']['accuracy']:.2%}  gap " \
               f"{m['gap']['accuracy']:.2%}" in headline
    assert metrics["models"]["lr"]["val"]["accuracy"] > metrics["models"]["lr"]["v2"]["accuracy"]

    # The figures cell shows every figure in figures/_figures.json, as real PNGs, each under its title.
    index = json.loads((run / "figures" / "_figures.json").read_text())
    figures = code_cell(nb, "figures_index")
    images = [o for o in figures.outputs if o.output_type == "display_data" and "image/png" in o.data]
    assert len(index) >= 5 and len(images) == len(index)
    for shown, figure in zip(images, index):
        assert base64.b64decode(shown.data["image/png"]) == (run / "figures" / figure["file"]).read_bytes()
    assert text_of(figures).splitlines() == [f["title"] for f in index]
    assert {"embedding_by_set.png", "embedding_density_diff.png"} <= {f["file"] for f in index}  # t-SNE drawn

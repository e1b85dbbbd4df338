"""MLflow tracking, an optional extra (``pip install 'gap-spark[mlflow]'``): ``tracking.mlflow: true`` or
``--mlflow``.

A pipeline run becomes one MLflow run (its params: every setting, flattened to dotted keys) with a
nested run per stage. Each stage's run is logged after the stage, from what it left on disk, so no
stage knows about MLflow:

- metrics: every number of the stage's JSON outputs (accuracies, gaps and their interval bounds as
  ``..._low`` / ``..._high``, AUCs, row counts, seconds), and each model's objective history as a metric
  with steps; for explain, per model: the accuracies, the gap's parts (``models.lr.parts.covariate.value``,
  ``..._ci95_low`` / ``_high``, in points), each label-free estimator's estimate and error with its
  interval, the density ratio's AUC and effective sample size, and each mitigation's change of the gap;
- artifacts: the JSON outputs, the per-class, superclass and confused-pair tables, the models in MLlib
  format (the saved directories as they are: ``PipelineModel.load`` reads them back), the figures
  (explain's own under ``figures/``) and the report. The pipeline's own run also gets the headline
  metrics and ``report.html``.

A single stage run with ``--mlflow`` (train, evaluate, shift, explain, visualize, report) is one run on its own.

The store is ``tracking.uri``; by default a SQLite file in the run directory (``RUN_DIR/mlflow/mlflow.db``,
artifacts in ``RUN_DIR/mlflow/artifacts``). A SQLite store named by ``tracking.uri`` keeps its artifacts in
``artifacts/`` beside the file. Remote run directories (``s3a://``) need ``tracking.uri``.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from gap_spark import __version__
from gap_spark.contracts import dataset
from gap_spark.contracts.run import EXPLAIN_FIGURES
from gap_spark.core import fs
from gap_spark.core.errors import GapSparkError

if TYPE_CHECKING:
    from gap_spark.contracts.paths import Paths
    from gap_spark.core.config import Config

__all__ = ["INSTALL_HINT", "TRACKED_STAGES", "StageHook", "flat_metrics", "flat_params", "pipeline_tracking",
           "require_mlflow", "stage_tracking", "tracking_uri"]

log = logging.getLogger(__name__)

INSTALL_HINT = ("MLflow tracking needs the mlflow extra: pip install 'gap-spark[mlflow]' (or, from a checkout, "
                "pip install -c constraints.txt '.[mlflow]'); or turn it off with tracking.mlflow: false")
# Stages that `gap-spark <stage> --mlflow` tracks on their own.
TRACKED_STAGES = ("train", "evaluate", "shift", "explain", "visualize", "report")
StageHook = Callable[[str, Mapping[str, Any]], None]


def require_mlflow() -> None:
    """Raise one clear line when the extra is not installed (called before any work starts)."""
    for noisy in ("mlflow", "alembic", "sqlalchemy"):  # their INFO lines (some at import) are not for the user
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        import alembic  # noqa: F401  - the SQLite store's migrations
        import mlflow  # noqa: F401
        import sqlalchemy  # noqa: F401
    except ImportError:
        raise GapSparkError(INSTALL_HINT) from None


def tracking_uri(config: "Config", paths: "Paths") -> tuple[str, str | None]:
    """The tracking URI and the artifact location for a new experiment (None: the store's own default)."""
    uri = config.settings.tracking.uri
    if uri:
        if uri.startswith("sqlite:///"):
            return uri, "file://" + os.path.join(os.path.dirname(os.path.abspath(uri[len("sqlite:///"):])),
                                                 "artifacts")
        return uri, None
    run_dir = paths.run_dir
    if not fs.is_local(run_dir.root):
        raise GapSparkError(f"tracking.mlflow needs tracking.uri when the run directory is not local "
                            f"(paths.run = {run_dir.root})")
    return "sqlite:///" + fs.local_path(run_dir.mlflow_db), "file://" + fs.local_path(run_dir.mlflow_artifacts)


# --------------------------------------------------------------------------------------------------
# Flattening settings and JSON outputs
# --------------------------------------------------------------------------------------------------

def _param_text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return ",".join(_param_text(v) for v in value)
    return str(value)


def flat_params(obj: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Settings (``dataclasses.asdict``) as ``{"train.lr.max_iter": "3", ...}``."""
    out: dict[str, str] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flat_params(value, name + "."))
        else:
            out[name] = _param_text(value if not isinstance(value, Mapping) else None)
    return out


def _metric_key(key: str) -> str:
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in key)


def _number(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if math.isfinite(float(x)) else None


def flat_metrics(obj: Any, prefix: str = "", depth: int = 5) -> dict[str, float]:
    """Every finite number of a JSON output as ``{"lr.gap.accuracy": 0.08, "lr.gap.ci95_low": ...}``.

    A two-number list is an interval (``_low`` / ``_high``); other lists are left out.
    """
    out: dict[str, float] = {}
    if isinstance(obj, Mapping) and depth > 0:
        for key, value in obj.items():
            out.update(flat_metrics(value, f"{prefix}{key}.", depth - 1))
    elif isinstance(obj, (list, tuple)) and len(obj) == 2 and all(_number(v) is not None for v in obj):
        out[_metric_key(prefix.rstrip(".") + "_low")] = float(obj[0])
        out[_metric_key(prefix.rstrip(".") + "_high")] = float(obj[1])
    elif (number := _number(obj)) is not None and prefix:
        out[_metric_key(prefix.rstrip("."))] = number
    return out


# --------------------------------------------------------------------------------------------------
# What each stage leaves on disk
# --------------------------------------------------------------------------------------------------

def _json(path: str) -> Any:
    try:
        return fs.read_json(path) if fs.exists(path) else None
    except (ValueError, OSError):
        return None


@contextmanager
def _local(path: str) -> Iterator[str | None]:
    """A local path for ``path`` (a copy for a remote file; None when it does not exist)."""
    if not fs.exists(path):
        yield None
        return
    if fs.is_local(path):
        yield fs.local_path(path)
        return
    if fs.is_dir(path):
        log.warning("tracking: %s is a remote directory and was not logged", path)
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="gap-spark-mlflow-") as tmp:
        local = os.path.join(tmp, fs.basename(path))
        with open(local, "wb") as handle:
            handle.write(fs.read_bytes(path))
        yield local


def _log_path(mlflow: Any, path: str, artifact_path: str | None = None) -> None:
    with _local(path) as local:
        if local is None:
            return
        if os.path.isdir(local):
            mlflow.log_artifacts(local, artifact_path)
        else:
            mlflow.log_artifact(local, artifact_path)


def _stage_outputs(stage: str, paths: "Paths") -> tuple[dict[str, Any], list[tuple[str, str | None]]]:
    """A stage's JSON outputs (name -> content) and the files and folders to log (path, artifact folder)."""
    rd = paths.run_dir
    files: list[tuple[str, str | None]] = []
    docs: dict[str, Any] = {}
    if stage == "synth":
        files.append((dataset.synth_marker_path(paths.raw), None))
    elif stage == "ingest":
        docs["ingest"] = _json(dataset.manifest_path(paths.data))
        files.append((dataset.manifest_path(paths.data), None))
    elif stage == "train":
        docs["train"] = _json(rd.train_summary)
        files.append((rd.train_summary, None))
        if fs.exists(rd.models):
            files += [(rd.model(name), f"models/{name}") for name in sorted(fs.list_dir(rd.models))]
    elif stage == "evaluate":
        docs["evaluate"] = _json(rd.metrics)
        files += [(rd.metrics, None), (rd.per_class_root, "per_class"), (rd.confused_pairs_root, "confused_pairs")]
    elif stage == "shift":
        docs["shift"] = _json(rd.shift)
        files += [(rd.shift, None), (rd.feature_stats_csv, None)]
    elif stage == "explain":
        docs["explain"] = _json(rd.explain)
        files.append((rd.explain, None))
        files += [(rd.figure(name), "figures") for name in EXPLAIN_FIGURES.values()]
    elif stage == "visualize":
        files.append((rd.figures, "figures"))
    elif stage == "report":
        files += [(rd.report_html, None), (rd.report_md, None)]
    return {k: v for k, v in docs.items() if v is not None}, files


def _pick(obj: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: obj[k] for k in keys if k in obj} if isinstance(obj, Mapping) else {}


def _explain_metrics(doc: Mapping[str, Any]) -> dict[str, float]:
    """Per model: accuracies, the gap's parts and the label-free estimators with their intervals, the
    density ratio's diagnostics and each mitigation's change of the gap (not the per-class rows)."""
    models: dict[str, Any] = {}
    for model, block in (doc.get("models") or {}).items():
        if not isinstance(block, Mapping):
            continue
        estimators = {name: _pick(e, ("estimate", "ci95", "error", "abs_error", "error_ci95"))
                      for name, e in (block.get("estimators") or {}).items()}
        mitigations = {name: {"gap_points": _pick(m.get("gap_points"), ("change",))}
                       for name, m in (block.get("mitigations") or {}).items() if isinstance(m, Mapping)}
        models[model] = {"accuracy": block.get("accuracy"), "parts": block.get("parts"), "estimators": estimators,
                         "weights": _pick(block.get("weights"), ("auc", "ess_fraction")), "mitigations": mitigations}
    return flat_metrics({"models": models, "seconds": doc.get("seconds")}, depth=7)


def _stage_metrics(name: str, doc: Any) -> tuple[dict[str, float], dict[str, list[float]]]:
    """The numbers to log for one JSON output, and histories (metric -> values by step)."""
    histories: dict[str, list[float]] = {}
    if name == "train" and isinstance(doc, Mapping):
        for model, block in (doc.get("models") or {}).items():
            history = block.get("objective_history") if isinstance(block, Mapping) else None
            if isinstance(history, list):
                histories[_metric_key(f"{model}.objective")] = [v for v in history if _number(v) is not None]
    if name == "evaluate" and isinstance(doc, Mapping):
        return flat_metrics({"models": doc.get("models"), "dataset": doc.get("dataset"),
                             "seconds": doc.get("seconds")}), histories
    if name == "explain" and isinstance(doc, Mapping):
        return _explain_metrics(doc), histories
    if name == "ingest" and isinstance(doc, Mapping):
        return flat_metrics({k: doc.get(k) for k in ("dim", "classes", "splits", "seconds")}), histories
    return flat_metrics(doc), histories


def _log_stage(mlflow: Any, stage: str, config: "Config", paths: "Paths", info: Mapping[str, Any]) -> dict[str, float]:
    """Log one stage (inside its active run) from its outputs; return its metrics."""
    from gap_spark.stages import STAGES

    sections = STAGES[stage].sections if stage in STAGES else ()
    settings = dataclasses.asdict(config.settings)
    mlflow.log_params(flat_params({s: settings[s] for s in sections if s in settings}))
    mlflow.set_tags({"gap_spark.stage": stage, "gap_spark.status": str(info.get("status", "done"))})
    docs, files = _stage_outputs(stage, paths)
    metrics: dict[str, float] = {}
    for name, doc in docs.items():
        numbers, histories = _stage_metrics(name, doc)
        metrics.update(numbers)
        for key, values in histories.items():
            for step, value in enumerate(values):
                mlflow.log_metric(key, value, step=step)
    if _number(info.get("seconds")) is not None:
        metrics["stage_seconds"] = float(info["seconds"])
    if metrics:
        mlflow.log_metrics(metrics)
    for path, artifact_path in files:
        _log_path(mlflow, path, artifact_path)
    return metrics


# --------------------------------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------------------------------

def _open_store(config: "Config", paths: "Paths") -> Any:
    """Import MLflow, point it at the store, and select (or create) the experiment."""
    require_mlflow()
    import mlflow

    uri, artifacts = tracking_uri(config, paths)
    if uri.startswith("sqlite:///"):
        os.makedirs(os.path.dirname(os.path.abspath(uri[len("sqlite:///"):])), exist_ok=True)
    mlflow.set_tracking_uri(uri)
    name = config.settings.tracking.experiment
    experiment = mlflow.get_experiment_by_name(name)
    experiment_id = experiment.experiment_id if experiment else mlflow.create_experiment(
        name, artifact_location=artifacts)
    mlflow.set_experiment(experiment_id=experiment_id)
    log.info("tracking: MLflow run in experiment %r at %s", name, uri)
    return mlflow


def _run_tags(paths: "Paths", what: str) -> dict[str, str]:
    return {"gap_spark.version": __version__, "gap_spark.command": what, "gap_spark.run_dir": paths.run,
            "gap_spark.data_dir": paths.data}


@contextmanager
def pipeline_tracking(config: "Config", paths: "Paths") -> Iterator[StageHook]:
    """The pipeline's MLflow run: yields ``hook(stage, info)``, called after each stage (run or skipped),
    which logs that stage as a nested run. A no-op hook when tracking is off.

    The run ends FAILED when the block raises (the failed stage is tagged); otherwise its headline
    metrics and ``report.html`` are logged at the end.
    """
    if not config.settings.tracking.mlflow:
        yield lambda stage, info: None
        return
    mlflow = _open_store(config, paths)
    with mlflow.start_run(run_name=f"pipeline {fs.basename(paths.run.rstrip('/'))}") as parent:
        mlflow.log_params(flat_params(dataclasses.asdict(config.settings)))
        mlflow.set_tags(_run_tags(paths, "pipeline"))
        headline: dict[str, float] = {}

        def hook(stage: str, info: Mapping[str, Any]) -> None:
            with mlflow.start_run(run_name=stage, nested=True):
                metrics = _log_stage(mlflow, stage, config, paths, info)
            if stage in ("evaluate", "shift", "explain"):
                headline.update({k: v for k, v in metrics.items() if not k.startswith(("dataset.", "seconds"))})

        try:
            yield hook
        except BaseException as exc:
            failed = getattr(exc, "stage", None)
            if failed:
                mlflow.set_tag("gap_spark.failed_stage", str(failed))
            raise
        if headline:
            mlflow.log_metrics(headline)
        _log_path(mlflow, paths.run_dir.report_html)
        log.info("tracking: MLflow run %s logged", parent.info.run_id)


@contextmanager
def stage_tracking(config: "Config", paths: "Paths", stage: str) -> Iterator[None]:
    """One stage run on its own (``gap-spark <stage> --mlflow``): logged after the block, FAILED if it raises."""
    if not config.settings.tracking.mlflow or stage not in TRACKED_STAGES:
        yield
        return
    mlflow = _open_store(config, paths)
    with mlflow.start_run(run_name=stage) as run:
        mlflow.set_tags(_run_tags(paths, stage))
        yield
        _log_stage(mlflow, stage, config, paths, {"status": "done"})
        log.info("tracking: MLflow run %s logged", run.info.run_id)

"""The whole pipeline, resumable: synth (optional), ingest, train, evaluate, shift, explain, visualize, report.

Each stage's inputs are summarised in a fingerprint (its config section plus the fingerprints of the
stages it reads). A stage whose completion marker holds the same fingerprint is skipped; a change
upstream changes every fingerprint downstream, so exactly the affected stages run again.

Markers: ``RAW/_synth.json`` (synth), ``DATA/_manifest.json`` (ingest), ``RUN/_stages/<stage>.json``
(the rest). A failed stage raises :class:`StageFailed`, which names it; the CLI exits non-zero.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from gap_spark.contracts import dataset
from gap_spark.core import fs
from gap_spark.core.errors import GapSparkError
from gap_spark.stages import PIPELINE_STAGES, STAGES, guarded
from gap_spark.tracking import StageHook, pipeline_tracking

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from gap_spark.contracts.paths import Paths
    from gap_spark.core.config import Config

log = logging.getLogger(__name__)


class StageFailed(GapSparkError):
    """A stage raised; the message names the stage and the cause."""

    def __init__(self, stage: str, cause: BaseException):
        self.stage = stage
        self.exit_code = cause.exit_code if isinstance(cause, GapSparkError) else 1
        super().__init__(f"stage '{stage}' failed: {cause}")


def digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def marker_path(stage: str, paths: "Paths") -> str:
    """Where a stage's completion marker lives: synth and ingest own theirs, the rest sit in the run."""
    if stage == "synth":
        return dataset.synth_marker_path(paths.raw)
    if stage == "ingest":
        return dataset.manifest_path(paths.data)
    return paths.run_dir.stage_marker(stage)


def read_marker(stage: str, paths: "Paths") -> dict | None:
    path = marker_path(stage, paths)
    if not fs.exists(path):
        return None
    try:
        return fs.read_json(path)
    except ValueError:
        return None


def external_inputs(stage: str, paths: "Paths") -> str | None:
    """What a stage reads that another process may have changed: the CSVs, or the dataset."""
    if stage == "ingest":
        try:
            return dataset.fingerprint(dataset.resolve_sources(paths.raw))
        except GapSparkError:
            return None  # missing files: ingest itself will say which
    if STAGES[stage].needs_spark:
        manifest = dataset.manifest_path(paths.data)
        if fs.exists(manifest):
            content = fs.read_json(manifest)
            return f"{content.get('fingerprint')}|{content.get('created')}"
    return None


def stage_fingerprint(stage: str, config: "Config", fingerprints: dict[str, str], paths: "Paths") -> str:
    own = {section: dataclasses.asdict(getattr(config.settings, section)) for section in STAGES[stage].sections}
    inputs: dict[str, str | None] = {up: fingerprints.get(up) for up in STAGES[stage].upstream}
    inputs["external"] = external_inputs(stage, paths)
    where = {"synth": paths.raw, "ingest": (paths.raw, paths.data)}.get(stage, (paths.data, paths.run))
    return digest({"stage": stage, "config": own, "inputs": inputs, "paths": where})


def run_pipeline(spark: "SparkSession", config: "Config", paths: "Paths", force: bool = False,
                 synth: bool = True, stages: tuple[str, ...] | None = None) -> dict:
    """Run the stages in order, skipping those already complete for the same inputs.

    Parameters
    ----------
    force
        Run every stage even when its marker matches.
    synth
        Generate the raw CSVs first (otherwise ``paths.raw`` must hold them).
    stages
        Only these stages (default: all of them, synth only when ``synth``).
    """
    wanted = [s for s in (stages or PIPELINE_STAGES) if s != "synth" or synth]
    if synth:
        # Generated data has synth.classes classes; ingest checks labels against the same K.
        config = config.with_overrides({"ingest": {"classes": config.settings.synth.classes}})
    # With tracking.mlflow, one MLflow run for the pipeline and a nested one logged after each stage.
    with guarded(wanted, config, paths), pipeline_tracking(config, paths) as track:
        summary = _run_stages(spark, config, paths, wanted, force, track)
    report = paths.run_dir.report_html
    if fs.exists(report):
        summary["report"] = report
        log.info("pipeline: report at %s", report)
    return summary


def _run_stages(spark: "SparkSession", config: "Config", paths: "Paths", wanted: list[str],
                force: bool, track: StageHook | None = None) -> dict[str, Any]:
    functions = {name: STAGES[name].function() for name in wanted}
    fingerprints: dict[str, str] = {}
    summary: dict[str, Any] = {"run": paths.run, "stages": {}}
    started = time.time()
    for stage in wanted:
        fingerprint = stage_fingerprint(stage, config, fingerprints, paths)
        fingerprints[stage] = fingerprint
        marker = read_marker(stage, paths)
        if not force and marker and marker.get("pipeline_fingerprint") == fingerprint:
            log.info("pipeline: %s is complete for these inputs, skipping", stage)
            summary["stages"][stage] = {"status": "skipped"}
            if track:
                track(stage, summary["stages"][stage])
            continue
        log.info("pipeline: running %s", stage)
        stage_config = config
        if stage == "train":
            stage_config = config.with_overrides({"train": {"overwrite": True}})  # inputs changed: refit
        t0 = time.time()
        try:
            result = functions[stage](spark if stage != "synth" else None, stage_config, paths)
        except GapSparkError as exc:
            raise StageFailed(stage, exc) from exc
        except Exception as exc:
            log.exception("pipeline: stage %s failed", stage)
            raise StageFailed(stage, exc) from exc
        seconds = round(time.time() - t0, 3)
        _write_marker(stage, paths, fingerprint, seconds, result)
        summary["stages"][stage] = {"status": "done", "seconds": seconds}
        if track:
            track(stage, summary["stages"][stage])
    summary["seconds"] = round(time.time() - started, 3)
    return summary


def _write_marker(stage: str, paths: "Paths", fingerprint: str, seconds: float, result: Any) -> None:
    path = marker_path(stage, paths)
    if stage in ("synth", "ingest"):
        # These stages own their marker file; add the pipeline's fingerprint to it.
        content = fs.read_json(path) if fs.exists(path) else {}
        content["pipeline_fingerprint"] = fingerprint
        fs.write_json(path, content)
        return
    fs.write_json(path, {"stage": stage, "pipeline_fingerprint": fingerprint, "seconds": seconds,
                         "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                         "summary": result if isinstance(result, dict) else None})

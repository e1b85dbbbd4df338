"""spark-submit command lines for each stage: what the README shows, the Airflow DAG issues and the
cluster tests run. One place builds them, so the three cannot drift apart."""
from __future__ import annotations

from pathlib import Path

from gap_spark.stages import STAGES

REPO = Path(__file__).resolve().parent.parent
# Stages run as separate spark-submit applications by a scheduler (synth needs no cluster).
SUBMITTED_STAGES = tuple(name for name, s in STAGES.items() if s.submitted)


def stage_arguments(stage: str, config_file: str, run_id: str | None = None) -> list[str]:
    """The job's own arguments: the shared config file, and the run id for the run directory."""
    args = ["--config", config_file]
    if stage == "pipeline" and run_id:
        args += ["--run-id", run_id]
    return args


def spark_submit_command(stage: str, master: str, py_files: str, config_file: str, jobs_dir: str | None = None,
                         conf: dict[str, str] | None = None, extra_args: list[str] | None = None,
                         spark_submit: str = "spark-submit") -> list[str]:
    """``spark-submit --master M --py-files ZIP [--conf k=v ...] jobs/<stage>.py --config FILE [...]``."""
    command = [spark_submit, "--master", master, "--py-files", py_files]
    for key, value in (conf or {}).items():
        command += ["--conf", f"{key}={value}"]
    command.append(str(Path(jobs_dir or REPO / "jobs") / f"{stage}.py"))
    return command + stage_arguments(stage, config_file) + list(extra_args or [])

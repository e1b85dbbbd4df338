"""Example Airflow DAG: one SparkSubmitOperator per gap-spark stage, run weekly on the real CSVs.

Copy this file into Airflow's dags/ folder and set the Airflow Variables below (or edit the defaults).
Each task is `spark-submit jobs/<stage>.py --config CONFIG`. A failing stage exits non-zero (2 for bad
input, 1 for a bug), which fails its task. A retried task runs its stage again and replaces only that
stage's own outputs (ingest only a gap-spark dataset; train only with `train.overwrite: true` in CONFIG,
otherwise it refuses to replace models it finds). Skipping stages whose inputs did not change is the
pipeline's job (`jobs/pipeline.py`, fingerprinted markers): schedule that one task for skip-on-rerun.

Needs `apache-airflow-providers-apache-spark` and a Spark connection (``spark_default``) whose master is
your cluster. The commands it issues are built by ``gap_spark.submit``, which the tests run for real.
"""
from __future__ import annotations

import os
from datetime import datetime, timedelta

from gap_spark.submit import SUBMITTED_STAGES, stage_arguments

GAP_SPARK_HOME = os.environ.get("GAP_SPARK_HOME", "/opt/gap-spark")
CONFIG_FILE = os.environ.get("GAP_SPARK_CONFIG", f"{GAP_SPARK_HOME}/conf/full.yaml")
PY_FILES = os.environ.get("GAP_SPARK_ZIP", f"{GAP_SPARK_HOME}/dist/gap_spark.zip")


def task_specs(config_file: str = CONFIG_FILE, home: str = GAP_SPARK_HOME) -> list[dict]:
    """What each task runs: application, arguments and py-files (plain data, testable without Airflow)."""
    return [{"task_id": stage, "application": f"{home}/jobs/{stage}.py",
             "application_args": stage_arguments(stage, config_file), "py_files": PY_FILES}
            for stage in SUBMITTED_STAGES]


try:  # the module stays importable (and testable) where Airflow is not installed
    from airflow import DAG
    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
except ImportError:  # pragma: no cover
    DAG = None

if DAG is not None:  # pragma: no cover
    with DAG(
        dag_id="gap_spark",
        start_date=datetime(2026, 1, 1),
        schedule="@weekly",
        catchup=False,
        default_args={"retries": 1, "retry_delay": timedelta(minutes=10)},
        tags=["gap-spark"],
    ) as dag:
        previous = None
        for spec in task_specs():
            task = SparkSubmitOperator(conn_id="spark_default", name=f"gap-spark-{spec['task_id']}",
                                       env_vars={"SPARK_CONF_DIR": f"{GAP_SPARK_HOME}/conf"}, **spec)
            if previous is not None:
                previous >> task
            previous = task

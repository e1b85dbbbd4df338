"""Config loading, CLI errors and exit codes, the session helper's master precedence, packaging."""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile

import pytest

from gap_spark import cli
from gap_spark.core import session
from gap_spark.core.config import load_config, parse_override
from gap_spark.core.errors import ConfigError, GapSparkError


def test_defaults_load_and_overrides_apply_in_order(tmp_path):
    file = tmp_path / "c.yaml"
    file.write_text("train:\n  lr:\n    max_iter: 7\nsynth:\n  classes: 20\n")
    config = load_config(str(file), sets=["train.lr.max_iter=9", "spark.conf.spark.sql.shuffle.partitions=3"],
                         overrides={"synth": {"classes": 30, "dim": None}})
    assert config.get("train.lr.max_iter") == 9          # --set beats the file
    assert config.get("synth.classes") == 30             # options beat the file
    assert config.get("synth.dim") == 1024               # None means "not given"
    assert config.get("spark.conf") == {"spark.sql.shuffle.partitions": 3}


@pytest.mark.parametrize("sets, key", [(["train.lr.max_iters=3"], "train.lr.max_iters"),
                                       (["nosuch=1"], "nosuch"), (["train.lr=3"], "train.lr")])
def test_unknown_or_misplaced_keys_are_errors_naming_the_key(sets, key):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        load_config(sets=sets)


def test_unknown_key_in_file_and_unsafe_yaml_are_refused(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("ingest:\n  clases: 5\n")
    with pytest.raises(ConfigError, match="ingest.clases"):
        load_config(str(bad))
    unsafe = tmp_path / "unsafe.yaml"
    unsafe.write_text("spark: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(unsafe))


def test_override_values_are_typed():
    assert parse_override("a.b=0.5") == {"a": {"b": 0.5}}
    assert parse_override("a=[lr, rf]") == {"a": ["lr", "rf"]}
    with pytest.raises(ConfigError):
        parse_override("novalue")


def test_cli_user_errors_print_one_line_and_exit_2(tmp_path, capsys):
    code = cli.main(["ingest", "--raw", str(tmp_path / "missing"), "--out", str(tmp_path / "ds")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "train CSV not found" in err[0]
    assert cli.main(["synth", "--set", "synth.bogus=1"]) == 2
    assert "unknown config key 'synth.bogus'" in capsys.readouterr().err


def test_master_precedence(monkeypatch):
    monkeypatch.delenv("PYSPARK_GATEWAY_PORT", raising=False)
    monkeypatch.delenv("MASTER", raising=False)
    assert session.choose_master(None, {}) == "local[*]"
    assert session.choose_master(None, {"spark.master": "spark://h:7077"}) == "spark://h:7077"
    assert session.choose_master("local[3]", {"spark.master": "spark://h:7077"}) == "local[3]"
    monkeypatch.setenv("PYSPARK_GATEWAY_PORT", "12345")  # launched by spark-submit: its --master wins
    assert session.choose_master("local[3]", {"spark.master": "x"}) is None


def test_spark_defaults_file_is_parsed(tmp_path):
    (tmp_path / "spark-defaults.conf").write_text("# c\nspark.master  local[2]\nspark.a=b\n\n")
    assert session.read_spark_defaults(str(tmp_path)) == {"spark.master": "local[2]", "spark.a": "b"}
    assert "spark.master" not in session.read_spark_defaults(str(session.REPO_CONF_DIR))


def test_missing_java_is_one_clear_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("JAVA_HOME", "PYSPARK_GATEWAY_PORT")}
    env["PATH"] = f"{tmp_path}:{os.path.dirname(sys.executable)}"  # no java on PATH
    (tmp_path / "raw").mkdir()
    out = subprocess.run([sys.executable, "-m", "gap_spark.cli", "train", "--data", str(tmp_path / "raw")],
                         capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 2
    assert "Java was not found" in out.stderr and "Traceback" not in out.stderr and "py4j" not in out.stderr


def test_java_version_is_detected():
    assert session.java_version() >= 17


def test_package_zip_holds_the_modules_and_defaults(tmp_path):
    from gap_spark.package import build_zip

    names = zipfile.ZipFile(build_zip(str(tmp_path / "g.zip"))).namelist()
    assert "gap_spark/defaults.yaml" in names and "gap_spark/stages/ingest.py" in names
    assert not [n for n in names if "__pycache__" in n]


def test_airflow_dag_tasks_match_the_submit_commands():
    from jobs import airflow_dag  # jobs/ is a namespace package beside gap_spark/ under the repo root

    specs = airflow_dag.task_specs(config_file="/c.yaml", home="/gs")
    assert [s["task_id"] for s in specs] == ["ingest", "train", "evaluate", "shift", "explain", "visualize",
                                                     "report"]
    from gap_spark.submit import spark_submit_command

    for spec in specs:
        command = spark_submit_command(spec["task_id"], "spark://m:7077", spec["py_files"], "/c.yaml",
                                       jobs_dir="/gs/jobs")
        assert command[-3:] == [spec["application"], *spec["application_args"]]


def test_user_error_base_class_has_exit_code_2():
    assert GapSparkError("x").exit_code == 2

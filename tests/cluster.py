"""A real Spark standalone cluster on 127.0.0.1 for the tests: a master and workers started with
``spark-class`` (pip's pyspark has no start-master.sh), each in its own process group so a test can
kill one, and all of them torn down even when the test fails."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pyspark

SPARK_HOME = Path(pyspark.__file__).parent
SPARK_CLASS = str(SPARK_HOME / "bin" / "spark-class")
SPARK_SUBMIT = str(SPARK_HOME / "bin" / "spark-submit")
REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cluster_env(work: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYSPARK_GATEWAY_PORT", "SPARK_CONF_DIR")}
    env.update(SPARK_HOME=str(SPARK_HOME), SPARK_LOCAL_IP="127.0.0.1", SPARK_LOG_DIR=str(work / "logs"),
               SPARK_CONF_DIR=str(REPO / "conf"), PYSPARK_PYTHON=sys.executable,
               PYSPARK_DRIVER_PYTHON=sys.executable, OPENBLAS_NUM_THREADS="1")
    return env


class Cluster:
    def __init__(self, work: Path, workers: int = 2, cores: int = 1, memory: str = "2g"):
        self.work = work
        self.env = cluster_env(work)
        self.port, self.ui_port = free_port(), free_port()
        self.url = f"spark://127.0.0.1:{self.port}"
        self.processes: dict[str, subprocess.Popen] = {}
        self.workers, self.cores, self.memory = workers, cores, memory

    def _start(self, name: str, args: list[str]) -> None:
        log = open(self.work / f"{name}.log", "ab")  # a restarted daemon appends
        self.processes[name] = subprocess.Popen([SPARK_CLASS, *args], env=self.env, stdout=log,
                                                stderr=subprocess.STDOUT, start_new_session=True)

    def start(self, timeout: float = 120) -> "Cluster":
        self.work.mkdir(parents=True, exist_ok=True)
        self._start("master", ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                               "--port", str(self.port), "--webui-port", str(self.ui_port)])
        for i in range(self.workers):
            self.start_worker(f"worker{i}")
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.alive_workers() == self.workers:
                return self
            for name, proc in self.processes.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited: {(self.work / f'{name}.log').read_text()[-2000:]}")
            time.sleep(1)
        raise RuntimeError(f"cluster did not come up with {self.workers} workers in {timeout}s")

    def start_worker(self, name: str) -> None:
        """Start (or restart, in a fresh work dir) the worker ``name`` against this master."""
        restarts = sum(1 for p in self.work.glob(f"{name}*") if p.is_dir())
        self._start(name, ["org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                           "--cores", str(self.cores), "--memory", self.memory,
                           "--webui-port", str(free_port()), "--work-dir",
                           str(self.work / f"{name}{'' if not restarts else f'-{restarts}'}"), self.url])

    def restore_workers(self, timeout: float = 120) -> None:
        """Restart the workers a test killed and wait until all of them are registered and alive."""
        for i in range(self.workers):
            name = f"worker{i}"
            proc = self.processes.get(name)
            if proc is None or proc.poll() is not None:
                self.start_worker(name)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.alive_workers() == self.workers:
                return
            time.sleep(1)
        raise RuntimeError(f"only {self.alive_workers()} of {self.workers} workers alive after {timeout}s")

    def state(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ui_port}/json/", timeout=5) as response:
            return json.loads(response.read())

    def alive_workers(self) -> int:
        try:
            return int(self.state().get("aliveworkers", 0))
        except OSError:
            return 0

    def kill(self, name: str) -> None:
        """SIGKILL a daemon and everything it started (a worker's executors too)."""
        proc = self.processes[name]
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def stop(self) -> None:
        for name in list(self.processes):
            self.kill(name)

    def submit(self, application: str, args: list[str], cwd: Path, py_files: str,
               conf: dict[str, str] | None = None, background: bool = False):
        from gap_spark.submit import spark_submit_command

        settings = {"spark.executor.memory": "1g", "spark.pyspark.python": sys.executable,
                    "spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1",
                    "spark.ui.enabled": "false", "spark.task.maxFailures": "4", **(conf or {})}
        stage = Path(application).stem
        command = spark_submit_command(stage, self.url, py_files, args[1] if args[:1] == ["--config"] else "",
                                       jobs_dir=str(Path(application).parent), conf=settings,
                                       spark_submit=SPARK_SUBMIT)
        # spark_submit_command adds --config FILE; pass the rest of the job's arguments after it.
        command += args[2:] if args[:1] == ["--config"] else args
        log = open(cwd / f"submit-{stage}-{time.time_ns()}.log", "wb")
        proc = subprocess.Popen(command, cwd=cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        proc.log_path = log.name  # type: ignore[attr-defined]
        if background:
            return proc
        proc.wait(timeout=900)
        return proc


@contextmanager
def running_cluster(work: Path, **kw) -> Iterator[Cluster]:
    cluster = Cluster(work, **kw)
    try:
        yield cluster.start()
    finally:
        cluster.stop()

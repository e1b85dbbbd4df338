"""The ``gap-spark`` command: one subcommand per stage, each calling the stage's library function.

User errors (bad input, missing dataset, wrong header, bad config) print one line and exit 2.
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from gap_spark.console import headline, interrupts_cancel_jobs
from gap_spark.contracts.paths import Paths
from gap_spark.core.config import Config, load_config
from gap_spark.core.errors import GapSparkError, describe_input_failure
from gap_spark.stages import PIPELINE_STAGES, STAGES, guarded
from gap_spark.tracking import TRACKED_STAGES, require_mlflow, stage_tracking

log = logging.getLogger("gap_spark")


def stage_function(name: str) -> Callable[..., dict[str, Any]]:
    """The library function behind a subcommand: a registered stage, or the pipeline."""
    if name == "pipeline":
        from gap_spark.pipeline import run_pipeline

        return run_pipeline
    return STAGES[name].function()


def needs_spark(command: str) -> bool:
    return command == "pipeline" or (command in STAGES and STAGES[command].needs_spark)


def _verbosity(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--quiet", action="store_true", help="log warnings only, print no summary")
    group.add_argument("--verbose", action="store_true", help="log debug messages, and Spark's INFO lines")


def _common(p: argparse.ArgumentParser, mlflow: bool = False) -> None:
    p.add_argument("--config", help="YAML config file (local path or URI) over the embedded defaults")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key, e.g. --set train.lr.max_iter=50 (repeatable)")
    if needs_spark(p.prog.rsplit(" ", 1)[-1]):
        p.add_argument("--remote", metavar="sc://HOST:PORT",
                       help="run over Spark Connect on this server (spark.remote; needs pip install "
                            "'gap-spark[connect]')")
    if mlflow:
        p.add_argument("--mlflow", action="store_true", default=None,
                       help="log the run to MLflow (tracking.mlflow; needs pip install 'gap-spark[mlflow]')")
    _verbosity(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gap-spark", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help=STAGES["synth"].help)
    _common(p)
    p.add_argument("--out", help="directory for the three CSVs (paths.raw)")
    p.add_argument("--scale", type=float, help="fraction of the real sizes for all three files (1.0 = full)")
    p.add_argument("--train-rows", type=int)
    p.add_argument("--val-rows", type=int)
    p.add_argument("--v2-rows", type=int)
    p.add_argument("--dim", type=int, help="feature dimension D (1024 for EVA-02 large)")
    p.add_argument("--classes", type=int, help="number of classes K (1000 for ImageNet)")
    p.add_argument("--seed", type=int)
    p.add_argument("--workers", type=int, help="generator processes")

    p = sub.add_parser("ingest", help=STAGES["ingest"].help)
    _common(p)
    p.add_argument("--raw", help="directory holding the three CSVs under their real names")
    p.add_argument("--train", help="train CSV (overrides --raw)")
    p.add_argument("--val", help="val CSV (overrides --raw)")
    p.add_argument("--v2", help="ImageNetV2 CSV (overrides --raw)")
    p.add_argument("--out", help="dataset directory (paths.data)")
    p.add_argument("--classes", type=int, help="labels must lie in [0, K); default 1000")
    p.add_argument("--max-bad-fraction", type=float, help="fail when more rows than this are bad")

    p = sub.add_parser("train", help=STAGES["train"].help)
    _common(p, mlflow=True)
    p.add_argument("--data", help="dataset directory")
    p.add_argument("--run", help="run directory")
    p.add_argument("--models", help="comma-separated: lr,rf")
    p.add_argument("--tune", action="store_true", default=None, help="grid search before the full fit")
    p.add_argument("--overwrite", action="store_true", default=None, help="replace models already in the run")

    for name in ("evaluate", "shift", "explain", "visualize"):
        p = sub.add_parser(name, help=STAGES[name].help)
        _common(p, mlflow=True)
        p.add_argument("--data", help="dataset directory")
        p.add_argument("--run", help="run directory")

    p = sub.add_parser("report", help=STAGES["report"].help)
    _common(p, mlflow=True)
    p.add_argument("--run", help="run directory")

    p = sub.add_parser("pipeline", help="run the stages in order, skipping completed ones")
    _common(p, mlflow=True)
    p.add_argument("--raw")
    p.add_argument("--data")
    p.add_argument("--run")
    p.add_argument("--run-id", help="run directory name beside paths.run ('auto': run-YYYYmmdd-HHMMSS, UTC)")
    p.add_argument("--force", action="store_true", help="re-run stages even when complete")
    p.add_argument("--no-synth", action="store_true", help="use existing CSVs in --raw")

    p = sub.add_parser("package", help="build a zip of gap_spark for spark-submit --py-files")
    p.add_argument("--out", default="dist/gap_spark.zip")
    _verbosity(p)
    return parser


def config_from_args(args: argparse.Namespace) -> tuple[Config, Paths]:
    """Config = defaults < --config file < command-line options < --set."""
    overrides: dict = {"paths": {}}
    cmd = args.command
    if cmd == "synth":
        overrides["paths"]["raw"] = args.out
        overrides["synth"] = {"scale": args.scale, "train_rows": args.train_rows, "val_rows": args.val_rows,
                              "v2_rows": args.v2_rows, "dim": args.dim, "classes": args.classes,
                              "seed": args.seed, "workers": args.workers}
    elif cmd == "ingest":
        overrides["paths"].update(raw=args.raw, data=args.out)
        overrides["ingest"] = {"classes": args.classes, "max_bad_fraction": args.max_bad_fraction}
    elif cmd == "train":
        overrides["paths"].update(data=args.data, run=args.run)
        overrides["train"] = {"models": args.models.split(",") if args.models else None,
                              "overwrite": args.overwrite, "tune": {"enabled": args.tune}}
    elif cmd in ("evaluate", "shift", "explain", "visualize"):
        overrides["paths"].update(data=args.data, run=args.run)
    elif cmd == "report":
        overrides["paths"]["run"] = args.run
    elif cmd == "pipeline":
        overrides["paths"].update(raw=args.raw, data=args.data, run=args.run)
    if getattr(args, "mlflow", None):
        overrides["tracking"] = {"mlflow": True}
    if getattr(args, "remote", None):
        overrides["spark"] = {"remote": args.remote}
    config = load_config(getattr(args, "config", None), sets=getattr(args, "sets", []), overrides=overrides)
    paths = Paths.from_config(config)
    if cmd == "pipeline" and args.run_id:
        import time

        from gap_spark.core import fs
        run_id = time.strftime("run-%Y%m%d-%H%M%S", time.gmtime()) if args.run_id == "auto" else args.run_id
        paths = Paths(raw=paths.raw, data=paths.data, run=fs.join(fs_parent(paths.run), run_id))
    return config, paths


def fs_parent(path: str) -> str:
    path = str(path).rstrip("/")
    return path.rsplit("/", 1)[0] if "/" in path else "."


def setup_logging(quiet: bool = False, verbose: bool = False) -> None:
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    # DataFrameQueryContextLogger repeats every query error as JSON with its Java trace.
    logging.getLogger("DataFrameQueryContextLogger").setLevel(logging.CRITICAL)
    for noisy in ("py4j", "numba", "matplotlib", "PIL", "pynndescent", "umap", "openTSNE"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def interrupted_message(command: str) -> str:
    """The one line printed on Ctrl-C: what was kept, and what to do next."""
    if command == "pipeline":
        return ("interrupted; stages that had finished are kept and marked complete, and "
                "`gap-spark pipeline` with the same options resumes from the interrupted one")
    if command in STAGES and STAGES[command].atomic:
        return "interrupted; nothing was committed (the previous output, if any, is unchanged)"
    return ("interrupted; this stage's outputs may be incomplete: run it again "
            "(the pipeline marks a stage complete only when it finishes)")


def _written_stages(args: argparse.Namespace) -> list[str]:
    if args.command == "pipeline":
        return [s for s in PIPELINE_STAGES if s != "synth" or not args.no_synth]
    return [args.command]


def run_command(args: argparse.Namespace) -> dict[str, Any]:
    """Run one parsed command and return its summary.

    The preflight checks and the directory locks come first, before Spark starts, so that a second
    run on the same directories or an unwritable output is refused in seconds.
    """
    if args.command == "package":
        from gap_spark.package import build_zip
        return {"zip": build_zip(args.out)}
    config, paths = config_from_args(args)
    log.debug("gap-spark %s: raw %s, data %s, run %s", args.command, paths.raw, paths.data, paths.run)
    func = stage_function(args.command)
    if needs_spark(args.command) and config.settings.spark.remote:
        from gap_spark.core.session import check_remote
        check_remote(config.settings.spark.remote)  # a bad URL or missing client packages: one line, before any work
    if config.settings.tracking.mlflow and (args.command == "pipeline" or args.command in TRACKED_STAGES):
        require_mlflow()  # before the locks and Spark: one line saying how to install it
    with guarded(_written_stages(args), config, paths):
        spark = None
        if needs_spark(args.command):
            from gap_spark.core.session import get_spark, set_log_level
            spark = get_spark(config, app_name=f"gap-spark {args.command}")
            if args.verbose:
                set_log_level(spark, "INFO")
        with interrupts_cancel_jobs(spark):
            if args.command == "ingest":
                return func(spark, config, paths, train=args.train, val=args.val, v2=args.v2)
            if args.command == "pipeline":
                return func(spark, config, paths, force=args.force, synth=not args.no_synth)
            with stage_tracking(config, paths, args.command):
                return func(spark, config, paths)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.quiet, args.verbose)
    try:
        summary = run_command(args)
    except GapSparkError as exc:
        print(f"gap-spark {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"gap-spark {args.command}: {interrupted_message(args.command)}", file=sys.stderr)
        return 130
    except Exception as exc:
        explained = describe_input_failure(exc)
        if explained is None:
            raise  # a bug: keep the traceback
        print(f"gap-spark {args.command}: error: {explained}", file=sys.stderr)
        return 2
    if summary is not None and not args.quiet:
        print(headline(summary))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""`gap-spark report`: one self-contained HTML page (and a Markdown twin) from a run directory.

The report reads what the other stages left in the run directory (metrics, shift, train summary,
the chosen model's per-class and confused-pair tables, the figure index and its PNGs) and works with
whatever is there: a missing or unreadable part becomes a note in the report, not a crash.
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from gap_spark import __version__
from gap_spark.contracts.run_artifacts import load_figures, load_run_artifacts, report_inputs
from gap_spark.core import fs
from gap_spark.core.errors import GapSparkError
from gap_spark.present.document import build_document, dataset_line, figure_blocks
from gap_spark.present.render import render_html, render_markdown

if TYPE_CHECKING:
    from gap_spark.contracts.paths import Paths
    from gap_spark.core.config import Config

__all__ = ["run_report"]

log = logging.getLogger(__name__)


def run_report(spark: Any, config: "Config", paths: "Paths") -> dict:
    """Write the run's ``report.html`` and ``report.md`` from whatever the run holds.

    Parameters
    ----------
    spark : SparkSession or None
        Unused: the report reads only small files.
    config : Config
        Uses ``report.title``, ``report.model`` (falling back to ``visualize.model``), ``report.top_rows``
        and ``train.models``.
    paths : Paths
        ``paths.run_dir`` is read and written.

    Returns
    -------
    dict
        ``html``, ``markdown`` (paths), ``html_bytes``, ``figures`` (count embedded), ``model``,
        ``missing`` (one sentence per part left out) and ``seconds``.

    Raises
    ------
    GapSparkError
        When the run directory does not exist or holds none of the report's inputs.
    """
    started = time.time()
    settings = config.settings
    run_dir = paths.run_dir
    if not fs.exists(run_dir.root):
        raise GapSparkError(f"run directory not found: {run_dir.root}")
    preferred = settings.report.model or settings.visualize.model
    art = load_run_artifacts(run_dir, preferred, settings.train.models)
    if not art.has_anything():
        names = [run_dir.relative(p) for p in (run_dir.metrics, run_dir.shift)]
        raise GapSparkError(f"nothing to report in {run_dir.root}: it has no {', '.join(names)}, figures or "
                            "per-class tables (run `gap-spark evaluate`, `shift` or `visualize` first)")
    found, figure_problems = load_figures(run_dir, art.figures or ())
    figures = figure_blocks(run_dir, found)
    problems = art.problems + figure_problems
    blocks = build_document(art, figures, problems, settings.report.top_rows)
    title = settings.report.title
    subtitle = [f"Run: {run_dir.root}"]
    line = dataset_line(art)
    if line:
        subtitle.append(line)
    subtitle.append(f"Generated {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())} by gap-spark {__version__}.")
    footer = f"Inputs read from {run_dir.root}: {', '.join(report_inputs(run_dir, art.model))}."
    page = render_html(title, subtitle, blocks, footer)
    fs.write_text(run_dir.report_html, page)
    fs.write_text(run_dir.report_md, render_markdown(title, subtitle, blocks, footer))
    log.info("report: %s (%d figures, %d parts missing)", run_dir.report_html, len(figures), len(problems))
    return {"html": run_dir.report_html, "markdown": run_dir.report_md, "html_bytes": len(page.encode("utf-8")),
            "figures": len(figures), "model": art.model, "missing": problems,
            "seconds": round(time.time() - started, 3)}

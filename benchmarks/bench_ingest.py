"""Ingest throughput: gap-spark's validated Spark ingest against pyarrow's own CSV-to-Parquet conversion.

Both read the same generated file (same columns) and write the same ``array<float>`` layout, in the
same run on the same machine; the ratio (gap-spark time / pyarrow time) is what to compare.

    python -m benchmarks.bench_ingest --rows 20000            # ~225 MB of CSV
    python -m benchmarks.bench_ingest --rows 100000 --repeats 3
"""
from __future__ import annotations

import os
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from benchmarks.common import (
    RESULTS,
    add_config_args,
    add_repeats_arg,
    add_spark_args,
    add_work_arg,
    bench_config,
    bench_parser,
    dump,
    machine,
    median_time,
    print_table,
    spark_session,
    work_dir,
)
from gap_spark.contracts.dataset import RAW_FILE_NAMES
from gap_spark.stages.ingest_preflight import preflight
from gap_spark.stages.ingest_split import SplitJob, ingest_split
from gap_spark.stages.synth import synth_settings, write_split


def pyarrow_convert(source: str, dim: int, out_dir: str) -> int:
    """The baseline: pyarrow reads the CSV (all cores) and writes row_id, path, label, features list<float>."""
    names = ["row_id", "path", "label"] + [str(j) for j in range(dim)]
    types = {"row_id": pa.int64(), "path": pa.string(), "label": pa.int32()}
    types.update({str(j): pa.float32() for j in range(dim)})
    table = pacsv.read_csv(source, read_options=pacsv.ReadOptions(column_names=names, skip_rows=1),
                           convert_options=pacsv.ConvertOptions(column_types=types))
    matrix = np.column_stack([table.column(str(j)).to_numpy() for j in range(dim)]).astype(np.float32, copy=False)
    features = pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), dim).cast(pa.list_(pa.float32()))
    out = pa.table({"row_id": table.column("row_id"), "path": table.column("path"),
                    "label": table.column("label"), "features": features})
    os.makedirs(out_dir, exist_ok=True)
    pq.write_table(out, os.path.join(out_dir, "part-0.parquet"), compression="snappy")
    return out.num_rows


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=1024)
    add_repeats_arg(parser)
    add_work_arg(parser, None, "generated CSV (reused) and both outputs")
    add_spark_args(parser, cores=0)
    add_config_args(parser)
    parser.add_argument("--out", default=os.path.join(RESULTS, "ingest.json"))
    args = parser.parse_args()

    work = work_dir(args.work, "bench-ingest-")
    source = os.path.join(work, f"rows{args.rows}_dim{args.dim}", RAW_FILE_NAMES["val"])
    if not os.path.exists(source):
        os.makedirs(os.path.dirname(source), exist_ok=True)
        spec = synth_settings(train_rows=1, val_rows=args.rows, v2_rows=1, dim=args.dim)
        write_split(spec, "val", source)
    size_mb = os.path.getsize(source) / 1e6

    config = bench_config(args.config, ["ingest.max_bad_fraction=0.01", *args.sets], cores=args.cores,
                          driver_memory=args.driver_memory)
    spark = spark_session(config, "bench-ingest")
    settings = config.settings.ingest
    # preflight reads D from the train header; this one CSV stands in for it.
    checks, dim = preflight({"train": source}, settings.classes, settings.max_bad_fraction)

    def run_spark() -> None:
        staging = os.path.join(work, "spark-out")
        shutil.rmtree(staging, ignore_errors=True)
        result = ingest_split(spark, SplitJob("val", source, checks["train"], dim, staging, staging), settings)
        assert result.rows_written == args.rows, result

    def run_pyarrow() -> None:
        out = os.path.join(work, "pyarrow-out")
        shutil.rmtree(out, ignore_errors=True)
        assert pyarrow_convert(source, dim, out) == args.rows

    run_spark()  # warm-up: JVM, Python workers, JIT
    spark_s, spark_all = median_time(run_spark, args.repeats)
    arrow_s, arrow_all = median_time(run_pyarrow, args.repeats)
    rows = [
        {"method": "gap-spark ingest (full validation)", "seconds": spark_s, "MB/s": size_mb / spark_s,
         "ratio": spark_s / arrow_s},
        {"method": "pyarrow read_csv + write_table", "seconds": arrow_s, "MB/s": size_mb / arrow_s, "ratio": 1.0},
    ]
    print(f"\nIngest of {args.rows} rows x {dim} features ({size_mb:.0f} MB CSV), median of {args.repeats}, "
          f"{os.cpu_count()} cores:")
    table = print_table(rows, ["method", "seconds", "MB/s", "ratio"])
    dump(args.out, {"machine": machine(), "rows": args.rows, "dim": dim, "csv_mb": size_mb,
                    "spark_seconds": spark_all, "pyarrow_seconds": arrow_all, "ratio": spark_s / arrow_s,
                    "table": table})
    spark.stop()


if __name__ == "__main__":
    main()

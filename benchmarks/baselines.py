"""The baselines gap-spark is measured against, each run as its own process so its memory is its own.

``pyarrow``   Baseline B: pyarrow's streaming CSV reader writing the same Parquet layout (no checks).
``prototype`` Baseline A, the approach gap-spark replaces: pandas reads the CSVs in chunks,
              ``StandardScaler.partial_fit`` then ``SGDClassifier.partial_fit`` over all of train, and
              scikit-learn ``LogisticRegression`` on as many train rows as fit a memory budget.

    python -m benchmarks.baselines pyarrow --raw RAW --out DIR --json out.json
    python -m benchmarks.baselines prototype --raw RAW --json out.json [--epochs 1] [--lr-memory-gb 8]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from gap_spark.contracts.dataset import RAW_FILE_NAMES

SPLITS = ("train", "val", "v2")


def feature_names(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\r\n").split(",")
    return header[3:]


def pyarrow_ingest(raw: str, out: str, block_mb: int = 64) -> dict:
    """Stream each CSV through pyarrow into Parquet (row_id, path, label, features list<float>)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    rows: dict[str, int] = {}
    for split in SPLITS:
        source = os.path.join(raw, RAW_FILE_NAMES[split])
        features = feature_names(source)
        names = ["row_id", "path", "label", *features]
        types = {"row_id": pa.int64(), "path": pa.string(), "label": pa.int32(),
                 **{name: pa.float32() for name in features}}
        reader = pacsv.open_csv(source, read_options=pacsv.ReadOptions(column_names=names, skip_rows=1,
                                                                       block_size=block_mb << 20),
                                convert_options=pacsv.ConvertOptions(column_types=types))
        os.makedirs(os.path.join(out, split), exist_ok=True)
        writer = None
        count = 0
        for batch in reader:
            matrix = np.column_stack([batch.column(name).to_numpy() for name in features])
            values = pa.array(matrix.astype(np.float32, copy=False).reshape(-1))
            table = pa.table({"row_id": batch.column("row_id"), "path": batch.column("path"),
                              "label": batch.column("label"),
                              "features": pa.FixedSizeListArray.from_arrays(values, len(features))
                              .cast(pa.list_(pa.float32()))})
            if writer is None:
                writer = pq.ParquetWriter(os.path.join(out, split, "part-0.parquet"), table.schema,
                                          compression="snappy")
            writer.write_table(table)
            count += table.num_rows
        if writer is not None:
            writer.close()
        rows[split] = count
    return {"rows": rows}


def _chunks(path: str, chunk_rows: int):
    import pandas as pd

    features = feature_names(path)
    dtypes = dict.fromkeys(features, np.float32)
    for chunk in pd.read_csv(path, chunksize=chunk_rows, dtype=dtypes):
        yield chunk[features].to_numpy(dtype=np.float32), chunk["label"].to_numpy(dtype=np.int64)


def _read_all(path: str, chunk_rows: int, max_rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    xs, ys, have = [], [], 0
    for x, y in _chunks(path, chunk_rows):
        if max_rows is not None and have + len(y) > max_rows:
            x, y = x[: max_rows - have], y[: max_rows - have]
        xs.append(x)
        ys.append(y)
        have += len(y)
        if max_rows is not None and have >= max_rows:
            break
    return np.concatenate(xs), np.concatenate(ys)


def prototype(raw: str, classes: int, epochs: int = 1, chunk_rows: int = 20_000, lr_memory_gb: float = 8.0,
              reg_param: float = 1e-4, lr_max_iter: int = 10, sgd_alpha: float = 1e-4, jobs: int = 2,
              seed: int = 0) -> dict:
    """Baseline A: chunked pandas + partial_fit SGD over all of train, and LR on what fits in memory."""
    from sklearn.linear_model import LogisticRegression, SGDClassifier
    from sklearn.preprocessing import StandardScaler

    paths = {split: os.path.join(raw, RAW_FILE_NAMES[split]) for split in SPLITS}
    out: dict = {"seconds": {}, "accuracy": {}}
    labels = np.arange(classes)

    t0 = time.time()
    scaler = StandardScaler()
    train_rows = 0
    for x, _ in _chunks(paths["train"], chunk_rows):
        scaler.partial_fit(x)
        train_rows += len(x)
    out["seconds"]["scale_pass"] = round(time.time() - t0, 2)

    t0 = time.time()
    sgd = SGDClassifier(loss="log_loss", alpha=sgd_alpha, n_jobs=jobs, random_state=seed)
    for _ in range(epochs):
        for x, y in _chunks(paths["train"], chunk_rows):
            sgd.partial_fit(scaler.transform(x), y, classes=labels)
    out["seconds"]["sgd_fit"] = round(time.time() - t0, 2)

    t0 = time.time()
    tests = {split: _read_all(paths[split], chunk_rows) for split in ("val", "v2")}
    tests = {split: (scaler.transform(x), y) for split, (x, y) in tests.items()}
    out["seconds"]["read_test_sets"] = round(time.time() - t0, 2)
    t0 = time.time()
    out["accuracy"]["sgd"] = {split: float((sgd.predict(x) == y).mean()) for split, (x, y) in tests.items()}
    out["seconds"]["sgd_predict"] = round(time.time() - t0, 2)

    # float64 rows for lbfgs plus, per row, K probabilities and their gradient: the budget sets the rows.
    bytes_per_row = 8 * (scaler.n_features_in_ + 2 * classes)
    lr_rows = int(min(train_rows, lr_memory_gb * 2**30 // bytes_per_row))
    t0 = time.time()
    x, y = _read_all(paths["train"], chunk_rows, max_rows=lr_rows)
    x = scaler.transform(x).astype(np.float64)
    out["seconds"]["lr_read"] = round(time.time() - t0, 2)
    t0 = time.time()
    # The same objective as MLlib's: C = 1 / (regParam n).
    lr = LogisticRegression(C=1.0 / (reg_param * len(y)), max_iter=lr_max_iter, tol=1e-6)
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lr.fit(x, y)
    out["seconds"]["lr_fit"] = round(time.time() - t0, 2)
    del x
    out["accuracy"]["sklearn_lr"] = {split: float((lr.predict(xs) == ys).mean()) for split, (xs, ys) in tests.items()}
    out.update(train_rows=train_rows, lr_rows=lr_rows, lr_memory_gb=lr_memory_gb, epochs=epochs,
               lr_iterations=int(np.max(lr.n_iter_)), chunk_rows=chunk_rows)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="which", required=True)
    a = sub.add_parser("pyarrow")
    a.add_argument("--raw", required=True)
    a.add_argument("--out", required=True)
    a.add_argument("--json", required=True)
    b = sub.add_parser("prototype")
    b.add_argument("--raw", required=True)
    b.add_argument("--json", required=True)
    b.add_argument("--classes", type=int, default=1000)
    b.add_argument("--epochs", type=int, default=1)
    b.add_argument("--chunk-rows", type=int, default=20_000)
    b.add_argument("--lr-memory-gb", type=float, default=8.0)
    b.add_argument("--reg-param", type=float, default=1e-4)
    b.add_argument("--lr-max-iter", type=int, default=10)
    b.add_argument("--jobs", type=int, default=2)
    args = p.parse_args(argv)
    if args.which == "pyarrow":
        result = pyarrow_ingest(args.raw, args.out)
    else:
        result = prototype(args.raw, args.classes, args.epochs, args.chunk_rows, args.lr_memory_gb,
                           args.reg_param, args.lr_max_iter, jobs=args.jobs)
    with open(args.json, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

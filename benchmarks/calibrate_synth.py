"""Check the generator's calibration: a converged multinomial logistic regression trained on the
generated train split should score about 90% on val and about 82% on V2 (EVA-02's own head: 90.05 / 81.89).

The features come straight from the generator (the same float32 values the CSVs hold), so this needs no
Spark and no CSV round trip.

    python -m benchmarks.calibrate_synth --scale 0.1          # 128k train rows, full val and v2
    python -m benchmarks.calibrate_synth --scale 0.01 --scale 0.1
"""
from __future__ import annotations

import os
import time

from benchmarks.common import RESULTS, bench_parser, dump, machine, print_table, split_matrix
from gap_spark.core.settings import FULL_ROWS
from gap_spark.ops.generator import World, without_shift
from gap_spark.stages.synth import synth_settings


def calibrate(scale: float, val_scale: float, max_iter: int, reg: float, shift: bool) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    spec = synth_settings(train_rows=round(FULL_ROWS["train"] * scale), val_rows=round(FULL_ROWS["val"] * val_scale),
                          v2_rows=round(FULL_ROWS["v2"] * val_scale))
    if not shift:
        spec = without_shift(spec)
    world = World(spec)
    started = time.time()
    x_train, y_train = split_matrix(world, "train")
    scaler = StandardScaler().fit(x_train)
    n = len(y_train)
    # MLlib's regParam lambda on standardised features is sklearn's C = 1 / (lambda * n).
    model = LogisticRegression(C=1.0 / (reg * n), max_iter=max_iter, tol=1e-6)
    model.fit(scaler.transform(x_train), y_train)
    fit_s = time.time() - started
    del x_train
    out = {"scale": scale, "train_rows": n, "shift": shift, "reg_param": reg, "iterations": int(model.n_iter_[0]),
           "fit_seconds": round(fit_s, 1)}
    for split in ("val", "v2"):
        x, y = split_matrix(world, split)
        out[f"{split}_rows"] = len(y)
        out[f"{split}_accuracy"] = float((model.predict(scaler.transform(x)) == y).mean())
    out["gap"] = out["val_accuracy"] - out["v2_accuracy"]
    return out


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--scale", type=float, action="append", help="train scale(s); default 0.1")
    parser.add_argument("--val-scale", type=float, default=1.0, help="val/v2 scale (1.0 = 50k / 10k)")
    parser.add_argument("--max-iter", type=int, default=200)
    parser.add_argument("--reg-param", type=float, default=1e-4)
    parser.add_argument("--no-shift", action="store_true", help="shift knobs at zero")
    parser.add_argument("--out", default=os.path.join(RESULTS, "calibration.json"))
    args = parser.parse_args()
    rows = [calibrate(s, args.val_scale, args.max_iter, args.reg_param, not args.no_shift)
            for s in (args.scale or [0.1])]
    for r in rows:
        print(r, flush=True)
    print_table(rows, ["scale", "train_rows", "shift", "iterations", "val_accuracy", "v2_accuracy", "gap",
                       "fit_seconds"])
    dump(args.out, {"machine": machine(), "runs": rows})


if __name__ == "__main__":
    main()

"""Build ``gap_spark.zip`` for ``spark-submit --py-files``: the package's modules and its defaults."""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def build_zip(out: str = "dist/gap_spark.zip") -> str:
    """Zip the ``gap_spark`` package (sources and data files, no caches); returns the zip's path."""
    out_path = Path(out).resolve()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out_path, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(PACKAGE_DIR.rglob("*")):
            if path.is_dir() or "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            archive.write(path, Path("gap_spark") / path.relative_to(PACKAGE_DIR))
    return str(out_path)


if __name__ == "__main__":  # pragma: no cover
    print(build_zip(os.environ.get("GAP_SPARK_ZIP", "dist/gap_spark.zip")))

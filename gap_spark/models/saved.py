"""Saved models of a run: listing and loading the PipelineModels under ``RUN_DIR/models/``, and checking
them against the dataset they are evaluated on (K classes, D features)."""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from gap_spark.core import fs
from gap_spark.core.errors import GapSparkError

if TYPE_CHECKING:
    from pyspark.ml import PipelineModel

    from gap_spark.contracts.run import RunDir

__all__ = ["check_model_matches_dataset", "list_models", "load_models", "model_input_dim", "model_num_classes"]

log = logging.getLogger(__name__)


def list_models(run_dir: "RunDir") -> list[str]:
    """Names of the saved models under ``RUN_DIR/models/`` (directories holding a ``metadata`` folder).

    Parameters
    ----------
    run_dir : RunDir
        The run directory.

    Returns
    -------
    list of str
        Sorted model names; empty when there are none.
    """
    root = run_dir.models
    if not fs.is_dir(root):
        return []
    names = []
    for name in fs.list_dir(root):
        if name.startswith((".", "_")):
            continue
        if fs.exists(fs.join(run_dir.model(name), "metadata")):
            names.append(name)
        else:
            log.warning("evaluate: %s is not a saved model (no metadata/), skipping it", run_dir.model(name))
    return names


def load_models(run_dir: "RunDir") -> dict[str, "PipelineModel"]:
    """Every saved ``PipelineModel`` of a run, by name.

    Parameters
    ----------
    run_dir : RunDir
        The run directory.

    Returns
    -------
    dict of str to PipelineModel

    Raises
    ------
    GapSparkError
        When the run holds no model, or a model directory cannot be read as a PipelineModel.
    """
    from pyspark.ml import PipelineModel

    names = list_models(run_dir)
    if not names:
        raise GapSparkError(f"run {run_dir.root} has no models under {run_dir.models} "
                            "(run `gap-spark train` first)")
    models = {}
    for name in names:
        path = run_dir.model(name)
        try:
            models[name] = PipelineModel.load(fs.to_spark_uri(path))
        except Exception as exc:  # noqa: BLE001 - a half-written or foreign directory is a user problem, not a bug
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise GapSparkError(f"model '{name}' at {path} cannot be loaded as a PipelineModel: "
                                f"{first_line}") from None
    return models


def _flat_stages(model: Any) -> list[Any]:
    stages = []
    for stage in getattr(model, "stages", [model]):
        stages.extend(_flat_stages(stage) if hasattr(stage, "stages") else [stage])
    return stages


def model_num_classes(model: "PipelineModel") -> int:
    """K: the number of classes the model's last stage predicts (size of its probability vector).

    Raises
    ------
    GapSparkError
        When the last stage is not a classifier.
    """
    last = _flat_stages(model)[-1]
    k = getattr(last, "numClasses", None)
    if k is None:
        raise GapSparkError(f"the model's last stage ({type(last).__name__}) is not a classifier")
    return int(k)


def model_input_dim(model: "PipelineModel") -> int | None:
    """D: the length of the feature vector the model expects, from its first stage that knows it.

    Feature stages before it (array-to-vector conversion, SQL) keep the dimension, so the first of
    StandardScaler (length of ``std``), PCA (rows of ``pc``), MinMax/MaxAbs scalers, VectorSizeHint
    or the classifier (``numFeatures``) gives the input D. None when no stage records it.
    """
    for stage in _flat_stages(model):
        name = type(stage).__name__
        try:
            if name == "StandardScalerModel":
                return len(stage.std)
            if name == "PCAModel":
                return int(stage.pc.numRows)
            if name == "MinMaxScalerModel":
                return len(stage.originalMin)
            if name == "MaxAbsScalerModel":
                return len(stage.maxAbs)
            if name == "VectorSizeHint":
                return int(stage.getSize())
        except Exception:  # noqa: BLE001 - an unreadable attribute just means "not known here"
            continue
        if hasattr(stage, "numFeatures") and hasattr(stage, "numClasses"):
            return int(stage.numFeatures)
    return None


def check_model_matches_dataset(name: str, model: "PipelineModel",
                                manifest: Mapping[str, Any]) -> tuple[int, int | None]:
    """Refuse a model whose K or D differs from the dataset's manifest.

    Parameters
    ----------
    name : str
        The model's name (for messages).
    model : PipelineModel
    manifest : mapping
        The dataset's manifest (``classes`` and ``dim``).

    Returns
    -------
    (int, int or None)
        The model's K and D.

    Raises
    ------
    GapSparkError
        When K (probability vector size) or D (expected feature length) disagree with the manifest.
    """
    k = model_num_classes(model)
    d = model_input_dim(model)
    data_k, data_d = manifest.get("classes"), manifest.get("dim")
    if data_k is not None and int(data_k) != k:
        raise GapSparkError(f"model '{name}' predicts K={k} classes but the dataset has K={data_k}; "
                            "train it again on this dataset")
    if d is not None and data_d is not None and int(data_d) != d:
        raise GapSparkError(f"model '{name}' expects D={d} features but the dataset has D={data_d}; "
                            "train it again on this dataset")
    return k, d

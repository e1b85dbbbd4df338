"""Random forest (MLlib RandomForestClassifier) on PCA-reduced inputs."""
from gap_spark.models.base import ModelSpec

SPEC = ModelSpec(name="rf", title="random forest")

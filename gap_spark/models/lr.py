"""Multinomial logistic regression (MLlib LogisticRegression)."""
from gap_spark.models.base import ModelSpec

SPEC = ModelSpec(name="lr", title="logistic regression")

"""gap-spark: measure and explain the accuracy gap between ImageNet and ImageNetV2 on Spark."""

__version__ = "0.1.0"

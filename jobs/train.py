"""spark-submit entry point for `gap-spark train`: same options, same library function.

    spark-submit --py-files dist/gap_spark.zip jobs/train.py --help
"""
import sys

from gap_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))

"""spark-submit entry point for `gap-spark evaluate`: same options, same library function.

    spark-submit --py-files dist/gap_spark.zip jobs/evaluate.py --help
"""
import sys

from gap_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))

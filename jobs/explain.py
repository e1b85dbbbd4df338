"""spark-submit entry point for `gap-spark explain`: same options, same library function.

    spark-submit --py-files dist/gap_spark.zip jobs/explain.py --help
"""
import sys

from gap_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["explain", *sys.argv[1:]]))

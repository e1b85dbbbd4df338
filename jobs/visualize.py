"""spark-submit entry point for `gap-spark visualize`: same options, same library function.

    spark-submit --py-files dist/gap_spark.zip jobs/visualize.py --help
"""
import sys

from gap_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["visualize", *sys.argv[1:]]))

"""spark-submit entry point for `gap-spark shift`: same options, same library function.

    spark-submit --py-files dist/gap_spark.zip jobs/shift.py --help
"""
import sys

from gap_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["shift", *sys.argv[1:]]))

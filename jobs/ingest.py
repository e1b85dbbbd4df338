"""spark-submit entry point for `gap-spark ingest`: same options, same library function.

    spark-submit --py-files dist/gap_spark.zip jobs/ingest.py --help
"""
import sys

from gap_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["ingest", *sys.argv[1:]]))

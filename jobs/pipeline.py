"""spark-submit entry point for `gap-spark pipeline`: same options, same library function.

    spark-submit --py-files dist/gap_spark.zip jobs/pipeline.py --help
"""
import sys

from gap_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["pipeline", *sys.argv[1:]]))

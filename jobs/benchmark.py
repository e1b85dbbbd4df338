"""Entry point of the benchmark harness: gap-spark's stages beside the prototype's approach.

    python jobs/benchmark.py --scale 0.1 --work data/bench/10pct [--scaling]
    python jobs/benchmark.py --help
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.harness import main

if __name__ == "__main__":
    sys.exit(main())

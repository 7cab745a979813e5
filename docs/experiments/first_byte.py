"""Seconds from starting a fresh `duetto ask` to the first byte of its answer on stdout.

    python3 docs/experiments/first_byte.py 5 [extra ask options]

Runs the `duetto` on PATH (or $DUETTO) five times and prints each time and the median.
"""

import os
import statistics
import subprocess
import sys
import time

QUESTION = "Explain Python's GIL in two sentences"


def main() -> None:
    runs = []
    for _ in range(int(sys.argv[1])):
        started = time.perf_counter()
        process = subprocess.Popen(
            [os.environ.get("DUETTO", "duetto"), "ask", QUESTION, "--max-tokens", "8", *sys.argv[2:]],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        process.stdout.read(1)
        runs.append(time.perf_counter() - started)
        process.communicate()
    print(" ".join(f"{seconds:.2f}" for seconds in runs), "median", f"{statistics.median(runs):.2f}")


if __name__ == "__main__":
    main()

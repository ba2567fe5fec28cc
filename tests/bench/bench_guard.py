"""How fast the guard's patient-identifier check reads hostile text, against a same-run baseline.

    python -m tests.bench guard [--repeat N]

The texts are 64 KiB of near-misses (the worst case for a scanner: digits everywhere, none of
them an identifier). The baseline is one pass of Python's compiled regular expression engine
over the same text looking for a run of digits: the least any digit scanner has to do.
"""

from __future__ import annotations

import argparse
import re
import statistics
import time

from bridge.guard.identifiers import find_patient_identifier

HOSTILE = {
    "digits and spaces": "1 " * 32000,
    "NIR-like groups": "1 85 05 78 006 084 00 " * 2900,
    "one long number": "7" * 65000,
    "Arabic-Indic digits": "١٢ " * 20000,
}
DIGITS = re.compile(r"\d+")


def timed(fn: object, text: str, repeat: int) -> float:
    assert callable(fn)
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn(text)
        runs.append(time.perf_counter() - started)
    return statistics.median(runs) * 1000


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench guard")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args(argv)
    print(f"{'text (64 KiB)':<22} {'guard ms':>9} {'baseline ms':>12} {'ratio':>7}")
    for name, text in HOSTILE.items():
        guard = timed(find_patient_identifier, text, args.repeat)
        baseline = timed(lambda t: sum(1 for _ in DIGITS.finditer(t)), text, args.repeat)
        print(f"{name:<22} {guard:>9.1f} {baseline:>12.2f} {guard / baseline:>6.1f}x")

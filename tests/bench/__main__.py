"""`make bench`: run every benchmark module (tests/bench/bench_*.py) and print its figures.

    python -m tests.bench                       # all of them, default sizes
    python -m tests.bench directory --lines 200000   # one of them, with its own options

Each module provides `main(argv: list[str] | None = None) -> None`, prints its own figures
(with a baseline measured in the same run) and raises or exits non-zero when it cannot run.
Benchmarks are not part of `make test`: they take minutes and use large data.
"""

from __future__ import annotations

import importlib
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).parent


def available() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))


def run(name: str, argv: list[str]) -> bool:
    module = importlib.import_module(f"tests.bench.bench_{name}")
    print(f"=== bench {name} {' '.join(argv)}".rstrip(), flush=True)
    started = time.perf_counter()
    try:
        module.main(argv)
    except SystemExit as exc:
        if exc.code not in (0, None):
            print(f"=== bench {name}: exited with {exc.code}", flush=True)
            return False
    except Exception:
        traceback.print_exc()
        print(f"=== bench {name}: FAILED", flush=True)
        return False
    print(f"=== bench {name}: done in {time.perf_counter() - started:.0f} s", flush=True)
    return True


def main(argv: list[str]) -> int:
    names = available()
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        print("available:", ", ".join(names))
        return 0
    if argv and not argv[0].startswith("-"):
        if argv[0] not in names:
            print(f"unknown benchmark {argv[0]!r}; available: {', '.join(names)}", file=sys.stderr)
            return 2
        return 0 if run(argv[0], argv[1:]) else 1
    results = [run(name, list(argv)) for name in names]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

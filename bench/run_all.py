"""Run every benchmark (``make bench``): the HTTP ratios, then the queue-scale comparison.

Each benchmark bounds its own duration and targets loopback only. Figures are printed and, with
``--json-dir``, written as JSON next to each other. The exit status is non-zero when a budget of
DESIGN.md §8 is missed, so a run says plainly whether the service is within budget on this machine.

    python bench/run_all.py [--quick] [--json-dir DIR]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import http_ratio, polling_load, queue_scale  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test of the benchmarks)")
    parser.add_argument("--json-dir", type=Path, help="write http_ratio.json and queue_scale.json here")
    args = parser.parse_args(argv)
    print(
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}"
    )
    json_args = lambda name: ["--json", str(args.json_dir / name)] if args.json_dir else []  # noqa: E731
    if args.json_dir:
        args.json_dir.mkdir(parents=True, exist_ok=True)
    print("\n== HTTP: public queue API vs a hello-world view on the same gunicorn config ==")
    ratio_args = ["--seconds", "3", "--rounds", "1"] if args.quick else []
    http_status = http_ratio.main(ratio_args + json_args("http_ratio.json"))
    print("\n== Redis store: a small vs a large queue ==")
    scale_args = ["--large", "20000", "--ops", "500"] if args.quick else []
    scale_status = queue_scale.main(scale_args + json_args("queue_scale.json"))
    print("\n== Waiting page: polling load of simulated visitors following poll_after_ms ==")
    polling_args = ["--visitors", "2000", "--seconds", "15"] if args.quick else []
    polling_status = polling_load.main(polling_args + json_args("polling_load.json"))
    return 1 if http_status or scale_status or polling_status else 0


if __name__ == "__main__":
    sys.exit(main())

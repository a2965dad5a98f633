#!/usr/bin/env python3
"""What one response costs the worker's loop thread in metrics: `WorkerMetrics.request()`.

    PYTHONPATH=src python bench/micro_metrics.py [--number N]

Prints nanoseconds per call (the best of 5 repeats of N calls) for an app request (it waited for
a thread: both histograms), a static or shed response (latency only), and the same with exact
status codes counted (the writer used when --statsd-host is set). Not a test: nothing is
asserted; compare runs on one machine, before and after a change.
"""

from __future__ import annotations

import argparse
import timeit

from frontdesk.metrics import NOT_QUEUED, Registry, method_index


def cost(status_codes: bool, queued: float, number: int) -> float:
    registry = Registry(1, status_codes=status_codes)
    metrics = registry.worker(registry.claim())
    metrics.reset()
    get = method_index("GET")
    timer = timeit.Timer(lambda: metrics.request(get, 200, 0.0031, queued, 0, 512))
    return min(timer.repeat(repeat=5, number=number)) / number * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=200_000, help="calls per repeat")
    args = parser.parse_args()
    # The lambda's own call is included; measure it once so the table can show the difference.
    empty = min(timeit.Timer(lambda: None).repeat(repeat=5, number=args.number))
    print(f"(an empty lambda call: {empty / args.number * 1e9:.0f} ns, included below)")
    for label, codes, queued in (
        ("app request", False, 0.0002),
        ("static / shed", False, NOT_QUEUED),
        ("app request, --statsd-host", True, 0.0002),
        ("static / shed, --statsd-host", True, NOT_QUEUED),
    ):
        print(f"WorkerMetrics.request, {label}: {cost(codes, queued, args.number):.0f} ns per call")


if __name__ == "__main__":
    main()

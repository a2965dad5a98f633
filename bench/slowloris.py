"""Bounded slow-client load for the ``slow-clients`` scenario (loopback only).

Opens N connections to 127.0.0.1:PORT and on each one sends an HTTP request
header one byte per interval (default 1 s), never finishing it -- the classic
"slowloris" pattern.  If the server closes a connection (or answers, e.g. with
408/400), it is counted and re-opened after one interval, so about N slow
connections stay open while the harness measures other traffic.

Bounded: exits by itself after --duration seconds, or at once on SIGTERM /
SIGINT, and prints one line ``SLOWJSON {...}`` with counters.
Prints ``READY <open>`` once all N connections are open or failed (or after
--ramp-timeout seconds).

    python bench/slowloris.py --port 8000 --connections 500 --duration 60
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import signal
import sys
import time

HOST = "127.0.0.1"  # loopback only, by design: there is no --host option


def header_bytes():
    head = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: frontdesk-bench-slowloris\r\n"
    yield from (head[i : i + 1] for i in range(len(head)))
    for n in itertools.count():
        line = b"X-Slow-%d: x\r\n" % n
        yield from (line[i : i + 1] for i in range(len(line)))


class Stats:
    def __init__(self):
        self.attempted = 0
        self.opened = 0
        self.connect_failures = 0
        self.closed_by_server = 0  # EOF or reset while we were still sending
        self.answered = 0  # server sent bytes back (e.g. 408 / 400)
        self.open_now = 0
        self.max_open = 0
        self.bytes_sent = 0


async def one_client(port, interval, stop, stats):
    while not stop.is_set():
        stats.attempted += 1
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 5)
        except (OSError, asyncio.TimeoutError):
            stats.connect_failures += 1
            await _sleep(stop, interval)
            continue
        stats.opened += 1
        stats.open_now += 1
        stats.max_open = max(stats.max_open, stats.open_now)
        read_task = asyncio.ensure_future(reader.read(65536))
        stop_task = asyncio.ensure_future(stop.wait())
        try:
            for byte in header_bytes():
                if stop.is_set():
                    break
                writer.write(byte)
                await writer.drain()
                stats.bytes_sent += 1
                done, _ = await asyncio.wait(
                    {read_task, stop_task},
                    timeout=interval,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if read_task in done:
                    data = read_task.exception() is None and read_task.result()
                    if data:
                        stats.answered += 1
                    else:
                        stats.closed_by_server += 1
                    break
        except (OSError, ConnectionError):
            stats.closed_by_server += 1
        finally:
            stats.open_now -= 1
            read_task.cancel()
            stop_task.cancel()
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), 1)
            except Exception:
                pass
        await _sleep(stop, interval)


async def _sleep(stop, seconds):
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except asyncio.TimeoutError:
        pass


async def main_async(args):
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.call_later(args.duration, stop.set)
    stats = Stats()
    tasks = []
    for _ in range(args.connections):
        tasks.append(asyncio.ensure_future(one_client(args.port, args.interval, stop, stats)))
        await asyncio.sleep(0)  # let each connect start before the next one
    started = time.monotonic()
    # wait until every connection is open (or failed), bounded by the ramp timeout
    while stats.open_now + stats.connect_failures < args.connections and not stop.is_set():
        if time.monotonic() - started > args.ramp_timeout:
            break
        await asyncio.sleep(0.05)
    print(f"READY {stats.open_now}", flush=True)
    await stop.wait()
    stats_at_stop = stats.open_now
    await asyncio.wait(tasks, timeout=5)
    for t in tasks:
        t.cancel()
    result = dict(vars(stats))
    result["open_at_stop"] = stats_at_stop
    print("SLOWJSON " + json.dumps(result), flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--connections", type=int, default=500)
    p.add_argument("--interval", type=float, default=1.0, help="seconds between bytes")
    p.add_argument("--duration", type=float, default=60.0, help="hard upper bound, seconds")
    p.add_argument("--ramp-timeout", type=float, default=15.0)
    args = p.parse_args(argv)
    if args.duration > 3600:
        sys.exit("--duration is capped at 3600 s")
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()

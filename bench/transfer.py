"""Large-body client for the upload-100m / download-100m scenarios (loopback only).

    python bench/transfer.py --port 8000 --mode upload --bytes 104857600
    python bench/transfer.py --port 8000 --mode download --bytes 104857600

Uses http.client; prints one line ``TRANSFERJSON {...}`` with the wall time,
bytes moved and the status code.  Upload sends the body in 1 MiB chunks with a
Content-Length header (no chunked encoding) to ``POST /upload`` and checks the
byte count the app echoes; download reads ``GET /download?bytes=N`` to the end.
"""

from __future__ import annotations

import argparse
import http.client
import json
import time

CHUNK = 1024 * 1024


def upload(port, size, timeout):
    block = bytes(range(256)) * (CHUNK // 256)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    t0 = time.perf_counter()
    conn.putrequest("POST", "/upload")
    conn.putheader("Content-Type", "application/octet-stream")
    conn.putheader("Content-Length", str(size))
    conn.endheaders()
    sent = 0
    while sent < size:
        part = block if size - sent >= CHUNK else block[: size - sent]
        conn.send(part)
        sent += len(part)
    resp = conn.getresponse()
    body = resp.read()
    elapsed = time.perf_counter() - t0
    conn.close()
    ok = resp.status == 200 and body.strip() == str(size).encode()
    return {"seconds": elapsed, "bytes": sent, "status": resp.status, "ok": ok,
            "echo": body[:40].decode("latin-1")}


def download(port, size, timeout):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    t0 = time.perf_counter()
    conn.request("GET", f"/download?bytes={size}")
    resp = conn.getresponse()
    got = 0
    while True:
        data = resp.read(CHUNK)
        if not data:
            break
        got += len(data)
    elapsed = time.perf_counter() - t0
    conn.close()
    return {"seconds": elapsed, "bytes": got, "status": resp.status,
            "ok": resp.status == 200 and got == size}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--mode", choices=("upload", "download"), required=True)
    p.add_argument("--bytes", type=int, default=100 * 1024 * 1024)
    p.add_argument("--timeout", type=float, default=60.0, help="socket timeout, seconds")
    args = p.parse_args(argv)
    fn = upload if args.mode == "upload" else download
    try:
        result = fn(args.port, args.bytes, args.timeout)
    except (OSError, http.client.HTTPException) as exc:
        result = {"seconds": None, "bytes": 0, "status": None, "ok": False,
                  "error": f"{type(exc).__name__}: {exc}"}
    print("TRANSFERJSON " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

"""Latency of `textvae serve`'s JSON API on this machine: medians, against the issue's bars.

    python benchmarks/serve_latency.py runs/words_en
    python benchmarks/serve_latency.py runs/sentences_en --data corpora/sentences_en/valid.txt

Starts the command line's server on 127.0.0.1 (a subprocess, as a user would), then times over HTTP:
  interpolate, 7 steps, and near, 10 items, between and around held-out items (bar: median under 150 ms);
  the map of `--map-items` held-out items at a fresh server's first request, when the codes are computed
  (bar: under 2 s), and once cached;
  50 requests at once (interpolate, near, sample, encode in turn) from 50 client threads (bar: all succeed,
  none over 2 s).
Exits 1 when a bar is missed. Run it on an otherwise idle machine, with OMP_WAIT_POLICY=PASSIVE.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor


class Server:
    """`textvae serve` on a free port of 127.0.0.1, in a subprocess."""

    def __init__(self, model: str, data: str | None, map_items: int):
        args = [sys.executable, "-m", "textvae", "serve", "--model", model, "--port", "0",
                "--map-items", str(map_items), *(["--data", data] if data else [])]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(120)
        if not line or not line[0].startswith("http://"):
            self.stop()
            sys.exit(f"the server did not start: {self.proc.stderr.read().strip()}")
        self.url = line[0].strip()

    def call(self, route: str, body: dict | None = None, timeout: float = 30) -> tuple[float, dict]:
        """(seconds, answer) of one request."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}/api/{route}", data=data,
                                         headers={"Content-Type": "application/json"})
        start = time.perf_counter()
        with urllib.request.urlopen(request, timeout=timeout) as r:
            answer = json.loads(r.read())
        return time.perf_counter() - start, answer

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def line(what: str, times: list[float], bar: float | None = None) -> bool:
    """Print the median (and the worst) of `times`; whether the median is within `bar` seconds."""
    med = statistics.median(times)
    ok = bar is None or med < bar
    verdict = "" if bar is None else f"   bar {bar * 1000:,.0f} ms: {'ok' if ok else 'MISSED'}"
    print(f"{what:<34} median {med * 1000:8.1f} ms   max {max(times) * 1000:8.1f} ms   "
          f"({len(times)} requests){verdict}")
    return ok


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model", help="run directory or checkpoint")
    p.add_argument("--data", help="held-out items for the map [default: the run's validation items]")
    p.add_argument("--map-items", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=30, help="requests timed per figure")
    p.add_argument("--map-starts", type=int, default=3, help="fresh servers whose first map request is timed")
    args = p.parse_args()

    ok = True
    cold = []
    for _ in range(args.map_starts):
        server = Server(args.model, args.data, args.map_items)
        try:
            info = server.call("info")[1]
            if not info["map"]["items"]:
                print(f"no map: {info['map']['note']}; pass --data FILE")
                server.stop()
                return 1
            seconds, mapped = server.call("map", timeout=120)
            cold.append(seconds)
        finally:
            server.stop()
    texts = mapped["texts"]
    label = {"label": info["labels"][0]} if info["conditional"] else {}
    print(f"model {info['model']}: codes of {info['latent_dim']} dimensions; {os.cpu_count()} CPUs; "
          f"map of {len(texts):,} items")

    server = Server(args.model, args.data, args.map_items)
    try:
        server.call("map", timeout=120)
        n = args.repeats
        warm = [server.call("interpolate", {"a": texts[0], "b": texts[1], **label})[0] for _ in range(3)]
        del warm                                                  # first requests: allocation, caches
        pairs = [(texts[(2 * k) % len(texts)], texts[(2 * k + 1) % len(texts)]) for k in range(n)]
        ok &= line("interpolate, 7 steps", [server.call("interpolate", {"a": a, "b": b, "steps": 7, **label})[0]
                                            for a, b in pairs], 0.150)
        ok &= line("near, 10 items", [server.call("near", {"text": a, "n": 10, "seed": k, **label})[0]
                                      for k, (a, _) in enumerate(pairs)], 0.150)
        ok &= line(f"map, {len(texts):,} items, first request", cold, 2.0)
        line("map, cached", [server.call("map")[0] for _ in range(5)])

        bodies = [("interpolate", {"a": texts[0], "b": texts[1], "steps": 7, **label}),
                  ("near", {"text": texts[2 % len(texts)], "n": 10, **label}),
                  ("sample", {"n": 10, "seed": 3, **label}),
                  ("encode", {"texts": texts[:2], **label})]

        def one(k: int) -> float | str:
            route, body = bodies[k % len(bodies)]
            try:
                return server.call(route, body, timeout=10)[0]
            except (urllib.error.URLError, OSError) as e:
                return f"{route}: {e}"

        with ThreadPoolExecutor(50) as pool:                      # 50 requests, all sent at once
            results = list(pool.map(one, range(50)))
        times = [r for r in results if isinstance(r, float)]
        failed = [r for r in results if isinstance(r, str)]
        slowest = max(times) if times else float("nan")
        fine = not failed and slowest < 2.0
        ok &= fine
        median = statistics.median(times) if times else float("nan")
        print(f"{'50 concurrent requests':<34} {len(times)}/50 succeeded; median {median * 1000:.1f} ms, "
              f"slowest {slowest * 1000:.1f} ms   bar: all, none over 2 s: {'ok' if fine else 'MISSED'}")
        for f in failed[:5]:
            print(f"  failed: {f}")
    finally:
        server.stop()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

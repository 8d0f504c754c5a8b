"""Load on `deeplab serve` over the loopback: 1, 8 and 32 concurrent clients posting real photos.

The server runs in its own process (`deeplab serve`, the shipped voc-mobilenetv2) once with dynamic
batching (--max-batch 8) and once without (--max-batch 1); an asyncio client (httpx) keeps N
requests in flight for a fixed number of requests. Printed: errors, p50 / p99 latency, throughput,
the ratio of batching to no batching at 8 clients, and the server's peak RSS. A last run sends more
clients than --max-queue admits: 503s, and the server's memory does not grow with the load.

    python benchmarks/bench_serve.py [--requests 64] [--backend torch]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpu import cpu_summary  # noqa: E402

PHOTOS = Path(__file__).resolve().parents[1] / "src" / "deeplab" / "assets" / "photos"


def photos() -> list[bytes]:
    """The shipped real photos as JPEG uploads (the VOC val photos, the bird, the dog)."""
    data = []
    for name in ("voc-1.png", "voc-23.png", "voc-114.png", "bird.png", "dog.png"):
        buffer = io.BytesIO()
        Image.open(PHOTOS / name).convert("RGB").resize((513, 513)).save(buffer, format="JPEG", quality=90)
        data.append(buffer.getvalue())
    return data


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(max_batch: int, max_queue: int, backend: str, threads: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    args = ["serve", "--port", str(port), "--max-batch", str(max_batch), "--max-queue", str(max_queue)]
    args += ["--backend", backend, "--threads", str(threads), "--max-wait-ms", "20"]
    server = subprocess.Popen([sys.executable, "-m", "deeplab", *args], stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz").status_code == 200:
                return server, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.kill()
    raise RuntimeError("the server did not become ready")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def load(url: str, clients: int, requests: int, images: list[bytes]) -> dict:
    """``clients`` requests in flight until ``requests`` were answered; statuses and latencies."""
    latencies, statuses = [], []
    counter = iter(range(requests))

    async def client(http: httpx.AsyncClient) -> None:
        for k in counter:
            files = {"image": (f"{k}.jpg", images[k % len(images)], "image/jpeg")}
            start = time.perf_counter()
            answer = await http.post(f"{url}/v1/segment", files=files)
            latencies.append(time.perf_counter() - start)
            statuses.append(answer.status_code)

    start = time.perf_counter()
    limits = httpx.Limits(max_connections=clients + 4)
    async with httpx.AsyncClient(timeout=600, limits=limits) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    seconds = time.perf_counter() - start
    ok = [t for t, s in zip(latencies, statuses) if s == 200]
    return {
        "ok": len(ok),
        "busy": statuses.count(503),
        "errors": len(statuses) - len(ok) - statuses.count(503),
        "p50": float(np.percentile(ok, 50)) if ok else float("nan"),
        "p99": float(np.percentile(ok, 99)) if ok else float("nan"),
        "throughput": len(ok) / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print(cpu_summary())
    images = photos()
    rows, throughput = [], {}
    for max_batch in (8, 1):
        server, url = start(max_batch, 64, args.backend, args.threads)
        try:
            asyncio.run(load(url, 2, 4, images))  # warm-up
            for clients in (1, 8, 32):
                r = asyncio.run(load(url, clients, args.requests, images))
                throughput[max_batch, clients] = r["throughput"]
                rows.append((max_batch, clients, r))
            peak = peak_rss_mib(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=30)
        rows.append((max_batch, "peak RSS", peak))
    print(f"\nvoc-mobilenetv2, 513x513 JPEG uploads, {args.requests} requests per row, backend {args.backend}")
    print(f"{'max-batch':>9} {'clients':>7} {'ok':>4} {'503':>4} {'errors':>6} {'p50 s':>7} {'p99 s':>7} {'img/s':>7}")
    for max_batch, clients, r in rows:
        if clients == "peak RSS":
            print(f"{max_batch:>9} {'':>7} peak RSS of the server: {r:.0f} MiB")
            continue
        print(
            f"{max_batch:>9} {clients:>7} {r['ok']:>4} {r['busy']:>4} {r['errors']:>6} "
            f"{r['p50']:>7.3f} {r['p99']:>7.3f} {r['throughput']:>7.2f}"
        )
    print(f"\nbatching at 8 clients: {throughput[8, 8] / throughput[1, 8]:.2f}x the throughput of --max-batch 1")

    server, url = start(8, 8, args.backend, args.threads)  # above the queue bound: 503s, flat memory
    try:
        asyncio.run(load(url, 2, 4, images))
        before = rss_mib(server.pid)
        r1 = asyncio.run(load(url, 64, 4 * args.requests, images))
        after_first = rss_mib(server.pid)
        r2 = asyncio.run(load(url, 64, 4 * args.requests, images))
        after_second = rss_mib(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(
        f"\nabove the bound (--max-queue 8, 64 clients, {4 * args.requests} requests, twice): "
        f"{r1['ok']} + {r2['ok']} answered, {r1['busy']} + {r2['busy']} x 503, {r1['errors'] + r2['errors']} errors; "
        f"server RSS {before:.0f} -> {after_first:.0f} -> {after_second:.0f} MiB"
    )


if __name__ == "__main__":
    main()

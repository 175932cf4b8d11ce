"""Single-recipient ``POST /api/v1/evaluate`` against a Litestar hello-world route on the same server.

``python benchmarks/http_load.py [--seconds 10] [--connections 8] [--floor]``: starts ``herald``'s app under
uvicorn (one worker, a migrated SQLite file, a fresh org's service key) in a child process on loopback, adds a
``GET /hello`` route to that same app, and drives both with a small keep-alive HTTP/1.1 load generator
(asyncio sockets, a fixed number of connections, bounded in time) in this process. Prints requests/s and
p50/p99 latency per route as a Markdown table, and the ratio evaluate/hello (goal ≥ 50 %).

``--floor`` adds two reference routes to the same app, driven with the same evaluate bodies: ``POST /floor/body``
reads the body and answers a constant; ``POST /floor/decode`` also has Litestar decode it into the endpoint's
``EvaluateIn`` (what any handler taking that body pays before its first line).

The evaluate request is the sample message (rules/examples) for one realistic customer, a different
customer id and phone number per request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
EXAMPLES = ROOT / "rules" / "examples"

SERVER = r'''
import sys, uvicorn
from litestar import get
from service.main import build_app
from service.settings import Settings
settings = Settings.from_env()
app = build_app(settings)

@get("/hello", operation_id="hello", sync_to_thread=False)
def hello() -> dict[str, str]:
    return {"hello": "world"}

app.register(hello)
if "--floor" in sys.argv:
    from typing import Any
    from litestar import Request, post
    from litestar.params import JSONBody
    from service.http.routes.evaluation import EvaluateIn

    @post("/floor/body", operation_id="floor_body", status_code=200)
    async def floor_body(request: Request[Any, Any, Any]) -> dict[str, str]:
        await request.body()
        return {"ok": "read"}

    @post("/floor/decode", operation_id="floor_decode", status_code=200)
    async def floor_decode(data: JSONBody[EvaluateIn]) -> dict[str, str]:
        return {"ok": "decoded"}

    app.register(floor_body)
    app.register(floor_decode)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="error", access_log=False)
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def evaluate_body(i: int) -> bytes:
    """The sample message for one customer (distinct id and phone per request)."""
    import yaml

    message = yaml.safe_load((EXAMPLES / "summer-sale.message.yaml").read_text())
    rulesets = {ref: yaml.safe_load((EXAMPLES / ref).read_text()) for ref in message["rules"].values()}
    customer = {"id": f"c{i:07d}", "first_name": "Asha", "tier": "gold", "affinities": ["electronics"],
                "timezone": "Asia/Kolkata", "phone": f"+9198{i % 100_000_000:08d}", "email": f"user{i}@example.com",
                "lifetime_value": 1200.5, "last_purchase_date": "2026-05-01", "fraud_score": 0.01,
                "subscription.sms": "subscribed", "subscription.email": "subscribed"}
    return json.dumps({"message": message, "rulesets": rulesets, "customers": [customer],
                       "at": "2026-07-04T13:30:00+00:00"}, default=str).encode()


async def drive(port: int, requests: list[bytes], seconds: float, connections: int) -> tuple[list[float], int]:
    """Send ``requests`` round-robin over ``connections`` keep-alive connections for ``seconds``; return the
    latencies of the responses (seconds) and how many were not 2xx."""
    latencies: list[float] = []
    failures = 0
    deadline = time.perf_counter() + seconds

    async def worker(k: int) -> None:
        nonlocal failures
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        i = k
        while time.perf_counter() < deadline:
            req = requests[i % len(requests)]
            i += connections
            t0 = time.perf_counter()
            writer.write(req)
            await writer.drain()
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - t0)
            if not status_line.split(b" ")[1].startswith(b"2"):
                failures += 1
        writer.close()

    await asyncio.gather(*(worker(k) for k in range(connections)))
    return latencies, failures


def raw_request(method: str, path: str, key: str, body: bytes = b"") -> bytes:
    head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


def row(name: str, latencies: list[float], failures: int, seconds: float) -> tuple[str, float]:
    rps = len(latencies) / seconds
    q = statistics.quantiles(latencies, n=100)
    return (f"| {name} | {len(latencies):,} | {failures} | {rps:,.0f} | {q[49] * 1000:.2f} | {q[98] * 1000:.2f} |", rps)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "http load").splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--floor", action="store_true", help="also drive two reference POST routes that take the same "
                    "body: one only reads it, one has Litestar decode it into EvaluateIn")
    args = ap.parse_args()
    from service.storage.db import make_engine, migrate, transaction
    from service.storage.keys import create_org, issue_key
    from service.storage.tables import User

    work = Path(tempfile.mkdtemp(prefix="herald-http-"))
    url = f"sqlite:///{work / 'herald.db'}"
    migrate(url)
    with transaction(make_engine(url)) as s:
        org, _, _ = create_org(s, "bench")
        user = User(org_id=org.id or 0, name="svc", roles="service")
        s.add(user)
        s.flush()
        _, key = issue_key(s, user)
    port = free_port()
    env = {**os.environ, "HERALD_DATABASE_URL": url, "HERALD_FIELDS": str(ROOT / "rules" / "fields.yaml"),
           "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port), *(["--floor"] if args.floor else [])],
                              env=env, cwd=ROOT)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        hello = [raw_request("GET", "/hello", key)]
        evaluate = [raw_request("POST", "/api/v1/evaluate", key, evaluate_body(i)) for i in range(1000)]
        asyncio.run(drive(port, evaluate[:50], 1.0, 2))  # warm-up: the prepared message is cached
        notes: list[str] = []
        lines = ["| route | requests | non-2xx | requests/s | p50 ms | p99 ms |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
        lat, bad = asyncio.run(drive(port, hello, args.seconds, args.connections))
        text, hello_rps = row("GET /hello (Litestar hello-world)", lat, bad, args.seconds)
        lines.append(text)
        lat, bad = asyncio.run(drive(port, evaluate, args.seconds, args.connections))
        text, eval_rps = row("POST /api/v1/evaluate (1 recipient)", lat, bad, args.seconds)
        lines.append(text)
        if args.floor:
            for path, name in (("/floor/body", "POST reads the same body, answers a constant"),
                               ("/floor/decode", "POST decodes the same body into EvaluateIn, answers a constant")):
                bodies = [raw_request("POST", path, key, evaluate_body(i)) for i in range(50)]
                lat, bad = asyncio.run(drive(port, bodies, args.seconds, args.connections))
                text, rps = row(f"{name} (reference)", lat, bad, args.seconds)
                lines.append(text)
                notes.append(f"{path}: {rps / hello_rps:.0%} of hello-world")
        print("\n".join(lines))
        print(f"\nevaluate / hello-world: {eval_rps / hello_rps:.0%} (goal ≥ 50 %); "
              f"{args.connections} connections, {args.seconds:.0f} s each, one uvicorn worker, loopback; "
              f"1-minute load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        if notes:
            print("references: " + "; ".join(notes))
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()

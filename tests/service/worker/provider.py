"""A local SMS provider speaking Twilio's Messages API on loopback, for the scale-out tests: it checks the
account and the basic auth, dedupes by ``I-Twilio-Idempotency-Token`` as Twilio does (a repeat answers the
first message's SID and delivers nothing new), can fail first attempts with 5xx or 429 (Retry-After), and
keeps what it delivered with the instant, for counting and for rate checks.

It runs in a process of its own (the test process is busy: a slow provider would time out the workers'
requests), and hands what it saw back through ``GET /_stats``."""

from __future__ import annotations

import base64
import json
import multiprocessing
import random
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import httpx

ACCOUNT = "AC" + "0123456789abcdef" * 2
TOKEN = "provider-token-123"


class Provider:
    """The provider, in a process of its own; ``fail_5xx`` / ``fail_429``: the share of first attempts answered
    500 / 429. ``stats()`` (or the properties after ``__exit__``) says what it saw."""

    def __init__(self, *, fail_5xx: float = 0.0, fail_429: float = 0.0, seed: int = 7):
        self.settings = {"fail_5xx": fail_5xx, "fail_429": fail_429, "seed": seed}
        ctx = multiprocessing.get_context("spawn")
        self.ready = ctx.Queue()
        self.process = ctx.Process(target=_serve, args=(self.settings, self.ready), daemon=True)
        self.port = 0
        self.seen: dict[str, Any] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Provider:
        self.process.start()
        self.port = self.ready.get(timeout=60)
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self.seen = self.stats()
        finally:
            self.process.terminate()
            self.process.join(timeout=10)

    def stats(self) -> dict[str, Any]:
        """What the provider saw so far: delivered (token → [sid, instant, to]), repeats, answers by status."""
        data = httpx.get(f"{self.url}/_stats", timeout=60).json()
        data["answers"] = defaultdict(int, {int(k): v for k, v in data["answers"].items()})
        return data

    @property
    def delivered(self) -> dict[str, list[Any]]:
        return (self.seen or self.stats())["delivered"]

    @property
    def repeats(self) -> int:
        return (self.seen or self.stats())["repeats"]

    @property
    def answers(self) -> dict[int, int]:
        return (self.seen or self.stats())["answers"]

    def transports_file(self, path: Any) -> str:
        """A HERALD_TRANSPORTS file sending SMS through this provider."""
        path.write_text(json.dumps({"sms": {"kind": "twilio", "base_url": self.url, "account_sid": ACCOUNT,
                                            "auth_token": TOKEN}}))
        return str(path)

    def busiest_second(self) -> int:
        """The most deliveries in any one-second window."""
        times = sorted(t for _, t, _ in self.delivered.values())
        best, lo = 0, 0
        for hi, t in enumerate(times):
            while t - times[lo] >= 1.0:
                lo += 1
            best = max(best, hi - lo + 1)
        return best


def _serve(settings: dict[str, Any], ready: Any) -> None:
    """The provider process: serve until terminated."""
    state = _State(**settings)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: Any, extra: dict[str, str]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in extra.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            with state.lock:
                body = {"delivered": state.delivered, "repeats": state.repeats, "answers": state.answers}
                self._send(200, body, {})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            self._send(*state.answer(self.path, self.headers, form))

    class Server(ThreadingHTTPServer):
        # a real provider's backlog: with the default 5, connections opened at once wait for a SYN retry (1 s)
        # and arrive together with later sends, which looks like a burst that no client sent
        request_queue_size = 256

    server = Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    ready.put(server.server_address[1])
    server.serve_forever()


class _State:
    """What the provider process keeps, and how it answers."""

    def __init__(self, *, fail_5xx: float, fail_429: float, seed: int):
        self.fail_5xx, self.fail_429 = fail_5xx, fail_429
        self.random = random.Random(seed)
        self.lock = threading.RLock()
        self.attempts: dict[str, int] = defaultdict(int)
        self.delivered: dict[str, tuple[str, float, str]] = {}  # token -> (sid, instant, to)
        self.repeats = 0
        self.answers: dict[int, int] = defaultdict(int)

    def answer(self, path: str, headers: Any, form: dict[str, str]) -> tuple[int, dict[str, Any], dict[str, str]]:
        """Twilio's answer to one request."""
        auth = base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()
        if path != f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json" or headers.get("Authorization") != f"Basic {auth}":
            return self._count(401, {"code": 20003, "message": "Authenticate", "status": 401}, {})
        token = headers.get("I-Twilio-Idempotency-Token") or ""
        if not token or not form.get("To") or not form.get("Body"):
            return self._count(400, {"code": 21602, "message": "Message body is required.", "status": 400}, {})
        with self.lock:
            self.attempts[token] += 1
            first = self.attempts[token] == 1
            if token in self.delivered:
                self.repeats += 1
                return self._count(201, {"sid": self.delivered[token][0], "status": "queued"}, {})
            roll = self.random.random()
            if first and roll < self.fail_5xx:
                return self._count(503, {"code": 20500, "message": "Service unavailable", "status": 503}, {})
            if first and roll < self.fail_5xx + self.fail_429:
                return self._count(429, {"code": 20429, "message": "Too Many Requests", "status": 429},
                                   {"Retry-After": "1"})
            sid = f"SM{len(self.delivered):032x}"
            self.delivered[token] = (sid, time.time(), form["To"])
        return self._count(201, {"sid": sid, "status": "queued", "to": form["To"]}, {})

    def _count(self, status: int, body: dict[str, Any], extra: dict[str, str]) -> tuple[int, dict[str, Any], dict[str, str]]:
        with self.lock:
            self.answers[status] += 1
        return status, body, extra

"""What the HTTP provider transports share: one lazily created ``httpx.AsyncClient`` per transport (bound to
the event loop of its first send), bounded timeouts, answers read up to a size limit, ``Retry-After``
parsing, and network failures turned into transient results with secrets redacted."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from engine.contracts import SendResult
from service.worker.transports.config import Options, Secret, redact

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024
RETRY_AFTER_MAX = 24 * 3600.0


def retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), clamped to [0, 1 day];
    None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_MAX)


@dataclass(frozen=True, slots=True)
class Answer:
    """A provider's HTTP answer: status, headers and at most ``limit`` bytes of body (``truncated`` when more
    was sent)."""

    status: int
    headers: httpx.Headers
    body: bytes
    truncated: bool

    def json(self) -> Any:
        """The body as JSON, or None when it is not JSON (or was cut at the size limit)."""
        if self.truncated or not self.body:
            return None
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            return None

    def json_object(self) -> Mapping[str, Any]:
        """The body as a JSON object; an empty mapping when it is anything else."""
        data = self.json()
        return data if isinstance(data, Mapping) else {}

    def snippet(self, limit: int = 200) -> str:
        """The start of the body as text, for error reasons."""
        return self.body[:limit].decode("utf-8", "replace").strip()

    def retry_after(self) -> float | None:
        """The ``Retry-After`` header in seconds, if any."""
        return retry_after(self.headers.get("retry-after"))


class TokenCache:
    """A provider's short-lived access token, fetched once for every send that needs it and fetched anew when it
    nears its expiry (the last ``REFRESH_MARGIN`` seconds or 10 % of its life) or a send found it rejected.

    ``fetch(now)`` asks the provider: ``(token, seconds it lives)``, or the ``SendResult`` of a failed fetch. One
    fetch at a time per event loop; a send that asks for a refresh while another already replaced the token
    it saw gets the new one."""

    REFRESH_MARGIN = 300.0

    def __init__(self, default_life: float):
        self.default_life = default_life
        self._token: tuple[str, float] | None = None  # (access token, refresh after: epoch seconds)
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None

    @property
    def current(self) -> str | None:
        """The cached token (for masking in logs), if any."""
        return self._token[0] if self._token else None

    async def get(self, fetch: Callable[[float], Awaitable[tuple[str, Any] | SendResult]], *,
                  refresh: bool = False) -> str | SendResult:
        """The cached token, or a fresh one from ``fetch`` when missing, near expiry or ``refresh`` is set."""
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        stale = self.current if refresh else None
        async with self._lock:
            if self._token is not None and self._token[0] != stale and time.time() < self._token[1]:
                return self._token[0]  # still fresh (or another send already refreshed it)
            now = time.time()
            got = await fetch(now)
            if isinstance(got, SendResult):
                return got
            token, expires = got
            life = float(expires) if isinstance(expires, (int, float)) and expires > 0 else self.default_life
            self._token = (token, now + life - min(self.REFRESH_MARGIN, life / 10))
            return token


class HttpTransport:
    """Base of the HTTP provider transports. Subclasses call :meth:`request` and map answers to results.

    Options every HTTP transport reads: ``base_url`` (the provider's API host; tests point it at a local
    server), ``timeout`` (seconds a whole request may take, default 10), ``max_connections`` (default 20),
    ``max_response_bytes`` (default 64 KiB: a bigger answer is not read).
    """

    kind = "http"
    default_base_url = ""

    def __init__(self, options: Options):
        self.base_url: str = options.url("base_url", self.default_base_url)
        self.timeout = options.number("timeout", DEFAULT_TIMEOUT, minimum=0.1, maximum=300)
        self.max_connections = options.whole("max_connections", 20, minimum=1, maximum=1000)
        self.max_response_bytes = options.whole("max_response_bytes", DEFAULT_MAX_RESPONSE_BYTES,
                                                minimum=1024, maximum=16 * 1024 * 1024)
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def secrets(self) -> Iterable[Secret | str | None]:
        """The values no reason or log line may contain (subclasses add their credentials)."""
        return ()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    def client(self) -> httpx.AsyncClient:
        """The transport's client, created on first use in the running event loop (and again if a later
        send runs in another loop)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop or self._client.is_closed:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0)),
                limits=httpx.Limits(max_connections=self.max_connections,
                                    max_keepalive_connections=self.max_connections),
                follow_redirects=False,
                # identity: a compressed answer could inflate far beyond the read limit in one chunk
                headers={"User-Agent": "herald-delivery/0.1", "Accept-Encoding": "identity"},
            )
            self._loop = loop
        return self._client

    async def request(self, method: str, url: str, *, auth: tuple[str, str] | None = None,
                      **kwargs: Any) -> Answer | SendResult:
        """Send one request; the answer (body read up to ``max_response_bytes``), or a transient result when
        the network failed or timed out."""
        client = self.client()
        try:
            # httpx bounds each phase (connect, each read …); this bounds the whole exchange, so a provider
            # dripping its answer byte by byte cannot hold a send
            async with asyncio.timeout(self.timeout):
                req = client.build_request(method, url, **kwargs)
                response = await client.send(req, stream=True, auth=auth)
                try:
                    body, truncated = bytearray(), False
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > self.max_response_bytes:
                            truncated = True
                            del body[self.max_response_bytes:]
                            break
                finally:
                    await response.aclose()
        except (httpx.TimeoutException, TimeoutError) as exc:
            return SendResult.transient(f"{self.kind}: timed out after {self.timeout:g}s ({type(exc).__name__})")
        except (httpx.RequestError, OSError) as exc:
            return SendResult.transient(self.safe(f"{self.kind}: network error: {type(exc).__name__}: {exc}"))
        log.debug("%s: %s answered HTTP %d", self.kind, method, response.status_code)
        return Answer(response.status_code, response.headers, bytes(body), truncated)

    def safe(self, text: str) -> str:
        """``text`` with this transport's secrets replaced by ``***``."""
        return redact(text, self.secrets())

    def unreadable(self, answer: Answer) -> SendResult:
        """The result for a success status whose body cannot be read (too big, not JSON, no id)."""
        if answer.truncated:
            return SendResult.transient(f"{self.kind}: HTTP {answer.status} answer exceeded "
                                        f"{self.max_response_bytes} bytes; the outcome is unknown")
        return SendResult.transient(self.safe(f"{self.kind}: HTTP {answer.status} answer without the "
                                              f"message id: {answer.snippet()!r}"))

    def http_error(self, answer: Answer, detail: str = "") -> SendResult:
        """The default mapping of an error status: 408, 425, 429 and 5xx transient (honouring Retry-After),
        anything else permanent."""
        reason = self.safe(f"{self.kind}: HTTP {answer.status}{': ' + detail if detail else ''}")
        if answer.status in (408, 425, 429) or answer.status >= 500:
            return SendResult.transient(reason, answer.retry_after())
        return SendResult.permanent(reason)

    async def aclose(self) -> None:
        """Close the HTTP client (its pooled connections)."""
        client, self._client, self._loop = self._client, None, None
        if client is not None and not client.is_closed:
            await client.aclose()

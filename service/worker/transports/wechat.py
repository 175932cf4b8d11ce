"""WeChat official-account template messages.

The access token comes from ``GET {base_url}/cgi-bin/token?grant_type=client_credential&appid=…&secret=…``
and is cached for its ``expires_in`` (less a margin); the message goes to
``POST {base_url}/cgi-bin/message/template/send?access_token=…``. WeChat answers HTTP 200 with an
``errcode``: 0 is success (``msgid``); an invalid or expired token is fetched anew once.

The token travels in the query string, so this module installs a filter on the ``httpx`` logger that
masks ``access_token=`` values in its request lines.

Options: ``appid`` and ``secret`` (required) and the HTTP options (``base_url`` default
``https://api.weixin.qq.com``).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from typing import Any

from engine.contracts import SendRequest, SendResult
from service.worker.transports.config import Options, Secret
from service.worker.transports.http_common import Answer, HttpTransport, TokenCache

#: an invalid, expired or not-latest access token: fetch a new one and retry once
TOKEN_ERRORS = frozenset({40001, 40014, 42001})
#: the user does not follow the account (43004), the openid is invalid (40003)
UNREACHABLE_ERRORS = frozenset({43004, 40003})
#: system busy, rate limited (45009 daily API quota; 45047 reached per user limit is permanent)
TRANSIENT_ERRORS = frozenset({-1, 45009, 45011})
_QUERY_SECRET = re.compile(r"((?:access_token|secret)=)[^&\s\"']+")


class _MaskQuerySecrets(logging.Filter):
    """Masks ``access_token=`` and ``secret=`` query values in log records (httpx logs request URLs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(_QUERY_SECRET.sub(r"\1***", str(a)) if "token=" in str(a) or "secret=" in str(a)
                                else a for a in record.args)
        if isinstance(record.msg, str) and ("token=" in record.msg or "secret=" in record.msg):
            record.msg = _QUERY_SECRET.sub(r"\1***", record.msg)
        return True


def install_log_mask() -> None:
    """Add the query-secret mask to the ``httpx`` logger (once)."""
    logger = logging.getLogger("httpx")
    if not any(isinstance(f, _MaskQuerySecrets) for f in logger.filters):
        logger.addFilter(_MaskQuerySecrets())


install_log_mask()


class WeChatTransport(HttpTransport):
    """WeChat template messages with a cached access token."""

    kind = "wechat"
    default_base_url = "https://api.weixin.qq.com"

    def __init__(self, options: Options):
        super().__init__(options)
        self.appid: str = options.text("appid")
        self.secret: Secret = options.secret("secret")
        self._tokens = TokenCache(default_life=7200.0)

    def secrets(self) -> Iterable[Secret | str | None]:
        """The app secret and the cached access token."""
        return (self.secret, self._tokens.current)

    def __repr__(self) -> str:
        return f"WeChatTransport(base_url={self.base_url!r}, appid={self.appid!r})"

    async def access_token(self, *, refresh: bool = False) -> str | SendResult:
        """The cached access token, fetched anew when missing, near its expiry or ``refresh`` is set."""
        return await self._tokens.get(self._fetch_token, refresh=refresh)

    async def _fetch_token(self, now: float) -> tuple[str, Any] | SendResult:
        answer = await self.request("GET", f"{self.base_url}/cgi-bin/token", params={
            "grant_type": "client_credential", "appid": self.appid, "secret": self.secret.reveal()})
        if isinstance(answer, SendResult):
            return answer
        if answer.status != 200:
            return self.http_error(answer, "fetching the access token")
        data = answer.json_object()
        token = data.get("access_token")
        if isinstance(token, str) and token:
            return token, data.get("expires_in")
        if "errcode" not in data:
            return self.unreadable(answer)
        reason = self.safe(f"wechat: fetching the access token: errcode {data.get('errcode')}: "
                           f"{data.get('errmsg', '')}")
        if data.get("errcode") in TRANSIENT_ERRORS:
            return SendResult.transient(reason)
        return SendResult.permanent(reason)  # invalid appid or secret, IP not whitelisted …

    async def deliver(self, request: SendRequest) -> SendResult:
        """POST the template message; errcode 0 → accepted (msgid); a token error refetches the token and
        retries once; 43004/40003 → permanent unreachable; -1/45009 → transient."""
        if not request.body.get("template_id"):
            return SendResult.permanent(f"wechat: the {request.channel} payload has no template_id")
        body = json.dumps({**request.body, "touser": request.to}, ensure_ascii=False).encode()
        for attempt in range(2):
            token = await self.access_token(refresh=attempt > 0)
            if isinstance(token, SendResult):
                return token
            answer = await self.request("POST", f"{self.base_url}/cgi-bin/message/template/send",
                                        params={"access_token": token}, content=body,
                                        headers={"Content-Type": "application/json; charset=utf-8"})
            if isinstance(answer, SendResult):
                return answer
            result = self.result(answer)
            if result is not None:
                return result
        return SendResult.permanent("wechat: the access token was refused again after fetching a new one")

    def result(self, answer: Answer) -> SendResult | None:
        """The outcome of WeChat's answer; None for a token error (fetch a new token and retry)."""
        if answer.status != 200:
            return self.http_error(answer, answer.snippet())
        data: dict[str, Any] = dict(answer.json_object())
        code = data.get("errcode")
        if code == 0:
            msgid = data.get("msgid")
            return SendResult.accepted(str(msgid)) if msgid not in (None, "") else self.unreadable(answer)
        if isinstance(code, bool) or not isinstance(code, int):
            return self.unreadable(answer)
        if code in TOKEN_ERRORS:
            return None
        reason = self.safe(f"wechat: errcode {code}: {data.get('errmsg', '')}")
        if code in UNREACHABLE_ERRORS:
            return SendResult.permanent(reason, unreachable=True)
        if code in TRANSIENT_ERRORS:
            return SendResult.transient(reason)
        return SendResult.permanent(reason)

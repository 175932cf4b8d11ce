"""The WeChat template-message transport against a local server: the token endpoint (cached token,
refetched on 40001/42001) and the template send endpoint with WeChat's errcode answers."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from werkzeug import Request, Response

from service.worker.transports.config import Options
from service.worker.transports.wechat import WeChatTransport

from .conftest import request

APPID = "wx1234567890abcdef"
SECRET = "wechat-app-secret-0123456789"
OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
TEMPLATE = {"touser": OPENID, "template_id": "ngqIpbwh8bUfcSsECmogfXcV14J0tQlEpBO27izEYtY",
            "url": "https://shop.example/order/1",
            "data": {"first": {"value": "您好，订单已发货"}, "keyword1": {"value": "Ana", "color": "#173177"}}}


class WeChat:
    """The token endpoint and the send endpoint; ``answers`` are the send's errcode answers in turn."""

    def __init__(self, *answers: dict[str, Any], token_answer: dict[str, Any] | None = None):
        self.answers = list(answers)
        self.token_answer = token_answer
        self.issued: list[str] = []
        self.sent: list[tuple[str, bytes]] = []

    def token(self, req: Request) -> Response:
        assert req.args.to_dict() == {"grant_type": "client_credential", "appid": APPID, "secret": SECRET}
        if self.token_answer is not None:
            return Response(json.dumps(self.token_answer), 200, content_type="application/json")
        self.issued.append(f"ACCESS_TOKEN_{len(self.issued) + 1}")
        return Response(json.dumps({"access_token": self.issued[-1], "expires_in": 7200}), 200,
                        content_type="application/json")

    def send(self, req: Request) -> Response:
        self.sent.append((req.args["access_token"], req.get_data()))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return Response(json.dumps(answer), 200, content_type="application/json")


def serve(httpserver, wechat: WeChat) -> WeChatTransport:
    httpserver.expect_request("/cgi-bin/token", method="GET").respond_with_handler(wechat.token)
    httpserver.expect_request("/cgi-bin/message/template/send", method="POST").respond_with_handler(wechat.send)
    return WeChatTransport(Options({"appid": APPID, "secret": SECRET, "base_url": httpserver.url_for("/")},
                                   "transports.wechat"))


OK = {"errcode": 0, "errmsg": "ok", "msgid": 200228332}


@pytest.mark.asyncio
async def test_sends_with_a_cached_token_and_utf8_json(httpserver):
    wechat = WeChat(OK)
    t = serve(httpserver, wechat)
    first = await t.deliver(request("wechat", OPENID, TEMPLATE))
    second = await t.deliver(request("wechat", OPENID, TEMPLATE))
    await t.aclose()
    httpserver.check_assertions()
    assert first.ok and first.provider_id == "200228332" and second.ok
    assert wechat.issued == ["ACCESS_TOKEN_1"] and [s[0] for s in wechat.sent] == ["ACCESS_TOKEN_1"] * 2
    raw = wechat.sent[0][1]
    assert "您好，订单已发货".encode() in raw  # UTF-8, not \\u escapes
    assert json.loads(raw) == TEMPLATE


@pytest.mark.asyncio
@pytest.mark.parametrize("code", [40001, 42001])
async def test_an_invalid_or_expired_token_is_fetched_again_once(httpserver, code):
    wechat = WeChat({"errcode": code, "errmsg": "invalid credential, access_token is invalid or not latest"}, OK)
    t = serve(httpserver, wechat)
    result = await t.deliver(request("wechat", OPENID, TEMPLATE))
    await t.aclose()
    assert result.ok and [s[0] for s in wechat.sent] == ["ACCESS_TOKEN_1", "ACCESS_TOKEN_2"]


@pytest.mark.asyncio
async def test_a_token_refused_twice_is_permanent(httpserver):
    wechat = WeChat({"errcode": 40001, "errmsg": "invalid credential"})
    t = serve(httpserver, wechat)
    result = await t.deliver(request("wechat", OPENID, TEMPLATE))
    await t.aclose()
    assert result.outcome == "permanent" and len(wechat.sent) == 2 and len(wechat.issued) == 2


@pytest.mark.asyncio
@pytest.mark.parametrize(("answer", "outcome", "unreachable"), [
    ({"errcode": 43004, "errmsg": "require subscribe hint: [xxx]"}, "permanent", True),
    ({"errcode": 40003, "errmsg": "invalid openid hint: [xxx]"}, "permanent", True),
    ({"errcode": -1, "errmsg": "system error"}, "transient", False),
    ({"errcode": 45009, "errmsg": "reach max api daily quota limit"}, "transient", False),
    ({"errcode": 40037, "errmsg": "invalid template_id"}, "permanent", False),
])
async def test_errcodes(httpserver, answer, outcome, unreachable):
    t = serve(httpserver, WeChat(answer))
    result = await t.deliver(request("wechat", OPENID, TEMPLATE))
    await t.aclose()
    assert (result.outcome, result.unreachable) == (outcome, unreachable)
    assert f"errcode {answer['errcode']}" in (result.reason or "")
    assert "ACCESS_TOKEN" not in (result.reason or "") and SECRET not in (result.reason or "")


@pytest.mark.asyncio
async def test_a_refused_app_secret_is_permanent_and_sends_nothing(httpserver):
    wechat = WeChat(OK, token_answer={"errcode": 40125, "errmsg": "invalid appsecret"})
    t = serve(httpserver, wechat)
    result = await t.deliver(request("wechat", OPENID, TEMPLATE))
    await t.aclose()
    assert result.outcome == "permanent" and "40125" in (result.reason or "") and not wechat.sent


@pytest.mark.asyncio
async def test_neither_the_secret_nor_the_token_reach_the_logs(httpserver, caplog):
    caplog.set_level(logging.DEBUG)
    t = serve(httpserver, WeChat(OK))
    assert (await t.deliver(request("wechat", OPENID, TEMPLATE))).ok
    await t.aclose()
    # the client side's records (the local server's own access log, werkzeug, is the provider's business)
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.split(".")[0] in ("httpx", "httpcore", "service"))
    assert "cgi-bin/message/template/send" in logged  # httpx did log the requests …
    assert SECRET not in logged and "ACCESS_TOKEN_1" not in logged  # … masked
    assert SECRET not in repr(t)

"""Tiny URLs: a rendered payload's clickable links rewritten to ``{base}/t/{code}`` before it is sent.

:func:`shorten` is pure: it returns the new payload and the (code, URL) pairs the caller stores with
:func:`service.storage.links.record_links` in the transaction that writes the delivery. Which fields hold
clickable links, by channel (the shapes the built-in channels' ``render`` produce):

* ``sms``: ``text``
* ``email``: the ``href`` of every ``<a>``/``<area>`` in ``html``, and the links of ``text``; never the
  ``headers`` (List-Unsubscribe) nor the unsubscribe link itself, wherever it appears
* ``push``: ``message.data.deep_link`` when it is an http(s) URL (images are fetched, not clicked)
* ``line``: the ``text`` of text messages; ``viber``: ``text`` and the open-url buttons' ``ActionBody``
* ``whatsapp``: the text of body parameters; ``wechat``: ``url``

Other channels (call tasks, ad audiences) and other fields are left as they are. The same URL gets one
code per recipient wherever it appears; codes are random (:func:`new_code`: 64 bits, URL-safe).
"""

from __future__ import annotations

import copy
import html as html_lib
import re
import secrets
from collections.abc import Callable, Mapping
from typing import Any

from sqlmodel import Session

from service.storage.links import codes_of, record_links

#: a link in plain text: scheme, then anything up to whitespace or a character that cannot end a bare URL
_TEXT_URL = re.compile(r"""https?://[^\s<>"'`{}|\\^]+""", re.IGNORECASE)
#: characters a bare URL in prose does not end with (sentence punctuation; ")" only when unbalanced)
_TRAILING = ".,;:!?'\"]>"
#: an ``href`` attribute in HTML, quoted or not
_HREF = re.compile(r"""(?P<lead>\bhref\s*=\s*)(?:"(?P<dq>[^"]*)"|'(?P<sq>[^']*)'|(?P<bare>[^\s"'=<>`]+))""",
                   re.IGNORECASE)
#: the URLs of a List-Unsubscribe header: ``<url>, <mailto:…>``
_ANGLE = re.compile(r"<([^<>]+)>")
#: the longest URL shortened (longer ones are left as they are)
MAX_URL = 8192
CODE_BYTES = 8  # 64 random bits → 11 URL-safe characters


def new_code() -> str:
    """A fresh random code: 64 bits from :mod:`secrets`, 11 URL-safe base64 characters."""
    return secrets.token_urlsafe(CODE_BYTES)


def _is_web(url: str) -> bool:
    return url[:7].lower() == "http://" or url[:8].lower() == "https://"


def _trim(url: str) -> str:
    """A bare URL without the punctuation of the sentence around it."""
    while url:
        last = url[-1]
        if last in _TRAILING or (last == ")" and url.count(")") > url.count("(")):
            url = url[:-1]
        else:
            break
    return url


class _Shortener:
    """One recipient's links: a code per distinct URL, skipping the protected ones."""

    def __init__(self, base: str, new_code: Callable[[], str], protected: set[str], known: Mapping[str, str]):
        self.prefix = f"{base.rstrip('/')}/t/"
        self.new_code = new_code
        self.protected = protected
        self.known = known
        self.codes: dict[str, str] = {}

    def link(self, url: str) -> str | None:
        """The tiny URL for ``url`` (None when it is left as it is)."""
        if (not _is_web(url) or url in self.protected or url.startswith(self.prefix) or len(url) > MAX_URL
                or re.search(r"[\x00-\x20\x7f]", url)):
            return None
        code = self.codes.get(url) or self.known.get(url)
        if code is None:
            code = self.new_code()
            if code in self.codes.values() or code in self.known.values():
                raise ValueError("new_code returned a code twice")
        self.codes[url] = code
        return self.prefix + code

    def text(self, value: Any) -> Any:
        """Every bare link of a text rewritten."""
        if not isinstance(value, str):
            return value

        def one(m: re.Match[str]) -> str:
            whole = m.group(0)
            if whole in self.protected:
                return whole
            url = _trim(whole)
            short = self.link(url)
            return whole if short is None else short + whole[len(url):]

        return _TEXT_URL.sub(one, value)

    def url(self, value: Any) -> Any:
        """A field that is one URL, rewritten when it is a web link."""
        if not isinstance(value, str):
            return value
        short = self.link(value.strip())
        return value if short is None else short

    def html(self, value: Any) -> Any:
        """Every ``href`` of an HTML document rewritten (its value HTML-unescaped to find the real URL)."""
        if not isinstance(value, str):
            return value

        def one(m: re.Match[str]) -> str:
            raw = next(g for g in (m.group("dq"), m.group("sq"), m.group("bare")) if g is not None)
            short = self.link(html_lib.unescape(raw).strip())
            if short is None:
                return m.group(0)
            return f'{m.group("lead")}"{html_lib.escape(short)}"'

        return _HREF.sub(one, value)


def _protected(payload: Mapping[str, Any]) -> set[str]:
    """The links never rewritten: every URL of a List-Unsubscribe header."""
    found: set[str] = set()
    headers = payload.get("headers")
    if isinstance(headers, Mapping):
        for name, value in headers.items():
            if str(name).lower() == "list-unsubscribe" and isinstance(value, str):
                found.update(u.strip() for u in _ANGLE.findall(value))
    return found


def shorten(payload: Mapping[str, Any], channel: str, *, base: str, new_code: Callable[[], str] = new_code,
            known: Mapping[str, str] | None = None) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The rendered ``payload`` of ``channel`` with its clickable http(s) links rewritten to
    ``{base}/t/{code}``, and the (code, original URL) pairs of the links it rewrote (one per distinct URL,
    first seen first). ``known`` (URL → code) are codes this recipient already has: they are reused, not made
    again. The input is not changed. The unsubscribe link (every URL of the List-Unsubscribe header) is never
    rewritten, nor any link already under ``{base}/t/``."""
    if not isinstance(base, str) or not _is_web(base):
        raise ValueError(f"the tiny-URL base must be an http(s) URL, not {base!r}")
    out: dict[str, Any] = copy.deepcopy(dict(payload))
    s = _Shortener(base, new_code, _protected(payload), known or {})
    if channel == "sms":
        out["text"] = s.text(out.get("text"))
    elif channel == "email":
        if "html" in out:
            out["html"] = s.html(out["html"])
        if "text" in out:
            out["text"] = s.text(out["text"])
    elif channel == "push":
        data = (out.get("message") or {}).get("data")
        if isinstance(data, dict) and "deep_link" in data:
            data["deep_link"] = s.url(data["deep_link"])
    elif channel == "line":
        for m in out.get("messages") or []:
            if isinstance(m, dict) and m.get("type") == "text":
                m["text"] = s.text(m.get("text"))
    elif channel == "viber":
        if "text" in out:
            out["text"] = s.text(out["text"])
        for b in ((out.get("keyboard") or {}).get("Buttons") or []):
            if isinstance(b, dict) and b.get("ActionType") == "open-url":
                b["ActionBody"] = s.url(b.get("ActionBody"))
    elif channel == "whatsapp":
        for component in ((out.get("template") or {}).get("components") or []):
            if isinstance(component, dict) and component.get("type") == "body":
                for p in component.get("parameters") or []:
                    if isinstance(p, dict) and p.get("type") == "text":
                        p["text"] = s.text(p.get("text"))
    elif channel == "wechat":
        if "url" in out:
            out["url"] = s.url(out["url"])
    return out, [(code, url) for url, code in s.codes.items()]


def track(session: Session, delivery: Any, *, base: str,
          new_code: Callable[[], str] = new_code) -> dict[str, Any] | None:
    """The tracked payload of one delivery (a ``Delivery`` row or the row dict the run step inserts: ``org_id``,
    ``key``, ``message_id``, ``run_id``, ``channel``, ``payload``), its links recorded in ``session`` — call it
    in the transaction that writes the payload. Codes the delivery already has (a repeated step, a fallback
    channel's payload) are reused. ``None`` when there is no payload."""
    def get(name: str) -> Any:
        return delivery.get(name) if isinstance(delivery, Mapping) else getattr(delivery, name, None)

    payload = get("payload")
    if not payload:
        return None
    key = str(get("key"))
    known = codes_of(session, key)
    out, pairs = shorten(payload, str(get("channel") or ""), base=base, new_code=new_code, known=known)
    fresh = [(code, url) for code, url in pairs if url not in known]
    record_links(session, int(get("org_id")), key, int(get("message_id")), int(get("run_id")), fresh)
    return out

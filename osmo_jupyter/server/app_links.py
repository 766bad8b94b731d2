"""Where a task's web app runs in the browser, and the links that reach it.

A page served by a task is written by the task's owner; the person who opens it may be an admin.
It must never run with the viewer's Jupyter credentials, so the API's proxy route
(`.../tasks/{task}/proxy/{port}/`, authenticated like every route) does not serve pages to a
browser: it redirects it to an *app link* `/osmo/api/v1/apps/{ticket}/...`, where `ticket` is signed
by the server and names the viewer, the workflow, the task, the port and an expiry. The link is
the app's only credential (no cookie of the server's origin is used or passed on), and it reaches
exactly that port of that task, re-checked on every request. The app is then served either

- on a **separate origin** (`OsmoConfig.app_proxy_url`: a host name that reaches this server but
  where the server answers nothing else), where it runs unrestricted: its cookies, storage and
  requests are those of another site. With `{app}` in the host name every task port gets an
  origin of its own, and the app runs at its root (absolute links work): the link, valid for a
  minute and once, is exchanged there for an HttpOnly cookie of that origin (as JupyterHub
  does for subdomains); or
- by default, on the server's own origin under `Content-Security-Policy: sandbox` without
  `allow-same-origin`: the page runs in an opaque origin (no cookies, no storage, no
  same-origin access to the API); its own requests still work because the link carries the
  ticket and the proxy answers the opaque origin's CORS requests for that path.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
import urllib.parse
from dataclasses import dataclass

from osmo_core.auth import Principal

from .base import API_PREFIX

APPS_PREFIX = f"{API_PREFIX}/apps"  # under the server's base URL
APP_ROUTE = rf"/{APPS_PREFIX}/(?P<ticket>[^/]+)(?P<path>/.*)?"  # a bad ticket: a JSON 403
HOST_KEY = "{app}"  # in app_proxy_url's host name: one origin per task port
APP_COOKIE = "osmo-app"  # on an app's own origin: the ticket its link was exchanged for
LINK_TO_COOKIE = 60.0  # seconds a link to an app's own origin lasts (it is used at once)

# The opaque origin keeps scripts, forms, popups and dialogs; never `allow-same-origin`
# (that would hand the page the server's origin, cookies and API) nor top navigation.
SANDBOX = "sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads"

# Headers an app may not send to the browser through a link: wiping the origin's data, a
# service worker scoped wider than the app's link, or a Referrer-Policy of its own (the link
# is a credential: it must not leave in a Referer to another site). On the server's own
# origin its Set-Cookie goes too (it would overwrite Jupyter's cookies).
DROPPED_REPLY = {"clear-site-data", "service-worker-allowed", "referrer-policy"}
REFERRER_POLICY = "same-origin"

# Control characters (C0, DEL) in a proxied path or query would end a header line in the
# request written to the task (the WebSocket tunnel writes it by hand).
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def unsafe_target(raw_path: str, raw_query: str) -> str | None:
    """Why the proxied path or query cannot be sent on, or None: a control character raw or
    once percent-decoded (CR/LF would inject header lines into the task's request)."""
    for part, text in (("path", raw_path), ("query", raw_query)):
        for form in (text, urllib.parse.unquote(text, "latin-1")):
            if found := _CONTROL.search(form):
                return f"control character {found.group()!r} in the {part}"
    return None


@dataclass(frozen=True)
class Ticket:
    """Who may reach which task port through an app link, until when."""

    user: str
    role: str
    wf_id: str
    task: str
    port: int
    expires: float

    @property
    def principal(self) -> Principal:
        return Principal(self.user, self.role, via="app-link")

    @property
    def where(self) -> tuple[str, str, int]:
        return self.wf_id, self.task, self.port


def host_key(wf_id: str, task: str, port: int) -> str:
    """16 hex characters naming a task port, DNS-safe: the `{app}` of app_proxy_url."""
    return hashlib.sha256(f"{wf_id}\0{task}\0{port}".encode()).hexdigest()[:16]


def _key(secret: bytes) -> bytes:
    return hmac.new(secret, b"osmo task app link", hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_ticket(secret: bytes, who: Principal, wf_id: str, task: str, port: int, ttl: float) -> str:
    body = [who.name, who.role, wf_id, task, port, round(time.time() + ttl)]
    payload = _b64(json.dumps(body, separators=(",", ":")).encode())
    mac = hmac.new(_key(secret), payload.encode(), hashlib.sha256).digest()
    return f"{payload}.{_b64(mac)}"


def read_ticket(secret: bytes, text: str) -> Ticket | None:
    """The ticket if this server signed it and it has not expired; None otherwise."""
    payload, _, mac = text.partition(".")
    want = hmac.new(_key(secret), payload.encode(), hashlib.sha256).digest()
    try:
        if not hmac.compare_digest(_unb64(mac), want):
            return None
        user, role, wf_id, task, port, expires = json.loads(_unb64(payload))
        ticket = Ticket(str(user), str(role), str(wf_id), str(task), int(port), float(expires))
    except (ValueError, TypeError):  # binascii.Error and JSONDecodeError are ValueErrors
        return None
    return ticket if ticket.expires > time.time() else None


def app_origin(template: str, key: str) -> str:
    """The origin (no trailing slash) the app `key` is served on; "" for the server's own."""
    return template.replace(HOST_KEY, key).rstrip("/")


def app_host_pattern(template: str) -> str | None:
    """A regex for the host name(s) of `app_proxy_url` (tornado's host routing), or None."""
    if not template:
        return None
    host = urllib.parse.urlsplit(template.replace(HOST_KEY, "appkey")).hostname or ""
    return "^" + re.escape(host).replace("appkey", "[0-9a-f]{16}") + "$"

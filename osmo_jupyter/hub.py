"""The control plane as a JupyterHub service: who a Hub token or Hub login cookie belongs to.

`jupyter osmo` started by a Hub (a managed service) or with a Hub service's environment (an
external one: `JUPYTERHUB_SERVICE_NAME`, `JUPYTERHUB_API_TOKEN`, `JUPYTERHUB_API_URL`, ...)
accepts, beside its own tokens, what the Hub issues for its users: API tokens, OAuth access
tokens, and the cookie its OAuth flow (`{prefix}oauth_callback`, jupyterhub's own handler)
leaves; a browser without them is sent into that flow (`login_redirect`). The token must carry
the service's access scope (`access:services!service=NAME`), so a single-user server's
`JUPYTERHUB_API_TOKEN` reaches this service only where the Hub's config grants it
(docs/jupyterhub.md).

OSMO's role: `admin` for Hub admins and members of a group `OsmoConfig.hub_group_roles` maps to
`admin`; `user` otherwise. The Hub's groups travel in the principal (pools' `groups`
allow-lists). jupyterhub is imported only here, and only when the Hub's environment is present.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, NoReturn

from osmo_core.auth import Principal
from osmo_core.errors import Unauthorized
from osmo_core.roles import ADMIN, USER

# Set by the Hub for a service it manages (and by an admin for an external one).
SERVICE_ENV = ("JUPYTERHUB_SERVICE_NAME", "JUPYTERHUB_API_TOKEN", "JUPYTERHUB_API_URL")
ADMIN_TTL = 60.0  # seconds a user's admin flag, read from the Hub, is trusted


def hub_service_environment() -> bool:
    """This process was started as a JupyterHub service."""
    return all(os.environ.get(name) for name in SERVICE_ENV)


class HubUsers:
    """The Hub's users as OSMO principals."""

    def __init__(self, group_roles: dict[str, str]):
        from jupyterhub.services.auth import HubOAuth

        # The token leaves the environment, which terminals and the agent start from (the
        # deny-list keeps it from tasks as well), so it is given explicitly: the trait's default
        # reads the environment on first use. The process-wide instance, because jupyterhub's
        # OAuth callback handler uses `HubOAuth.instance()`: one made apart from it would exchange
        # the Hub's code with no client secret (`invalid_client`).
        token = os.environ.pop("JUPYTERHUB_API_TOKEN", "")
        self.oauth = HubOAuth.instance(api_token=token, cache_max_age=ADMIN_TTL)
        self.name = os.environ.get("JUPYTERHUB_SERVICE_NAME", "")
        self.group_roles = group_roles
        self._admins: dict[str, tuple[float, bool]] = {}

    def callback_handler(self) -> tuple[str, Any]:
        """The route finishing the Hub's OAuth flow for a browser (under the server's base
        URL, the service's prefix): it leaves the login cookie `principal` reads."""
        from jupyterhub.services.auth import HubOAuthCallbackHandler

        return "/oauth_callback", HubOAuthCallbackHandler

    def login_redirect(self, handler: Any, next_url: str) -> NoReturn:
        """Send a browser into the Hub's OAuth flow (as jupyterhub's `HubOAuthenticated`
        does); the callback leaves the login cookie and sends it back to `next_url`."""
        from tornado.httputil import url_concat
        from tornado.web import Finish

        auth = self.oauth
        params: dict[str, str] = {}
        verifier = None
        if auth.pkce_enabled:
            verifier, challenge, method = auth.generate_pkce_code_challenge()
            params.update(code_challenge=challenge, code_challenge_method=method)
        params["state"] = auth.set_state_cookie(handler, next_url=next_url, code_verifier=verifier)
        handler.redirect(url_concat(auth.login_url, params))
        raise Finish()

    async def principal(self, handler: Any) -> Principal | None:
        """Who the request's Hub token (or Hub login cookie) belongs to; None when it has
        neither. Unauthorized when the token lacks this service's access scope."""
        from tornado.web import HTTPError

        auth = self.oauth
        # Not `auth.get_user(handler)`: it patches jupyter_server's XSRF check class-wide with
        # one that runs before the caller is known. jupyter_server's own check stays.
        token = auth.get_token(handler, in_cookie=False)
        if token:
            handler._token_authenticated = True  # a header: nothing a page can forge
        else:
            cookie = handler.get_secure_cookie(auth.cookie_name)
            token = cookie.decode("ascii", "replace") if cookie else None
        if not token:
            return None
        try:
            model = await auth.user_for_token(
                token, session_id=auth.get_session_id(handler), sync=False
            )
        except HTTPError as e:  # the Hub did not answer, or answered an error
            raise Unauthorized(f"the Hub could not check this token: {e.log_message}") from None
        if not model or model.get("kind", "user") != "user":
            return None
        name = str(model["name"])
        if not self.oauth.check_scopes(self.oauth.access_scopes, model):
            raise Unauthorized(
                f"the Hub's token for {name!r} does not give access to the service "
                f"{self.name!r} (scope access:services!service={self.name}); see "
                "docs/jupyterhub.md for the Hub's role config"
            )
        groups = tuple(sorted(str(g) for g in model.get("groups") or ()))
        admin = await self._is_admin(name, model)
        admin = admin or any(self.group_roles.get(g) == ADMIN for g in groups)
        return Principal(name, ADMIN if admin else USER, via="hub", groups=groups)

    async def _is_admin(self, name: str, model: dict[str, Any]) -> bool:
        """The Hub's admin flag: in the model when the token may read it, else asked of the
        Hub with the service's own token (scope `read:users`), remembered ADMIN_TTL s."""
        if "admin" in model:
            return bool(model["admin"])
        now = time.monotonic()
        known = self._admins.get(name)
        if known is not None and now - known[0] < ADMIN_TTL:
            return known[1]
        from tornado.httpclient import AsyncHTTPClient, HTTPClientError

        url = f"{self.oauth.api_url.rstrip('/')}/users/{name}"
        try:
            resp = await AsyncHTTPClient().fetch(
                url, headers={"Authorization": f"token {self.oauth.api_token}"}, request_timeout=10
            )
            admin = bool(json.loads(resp.body).get("admin"))
        except (HTTPClientError, OSError, ValueError) as e:
            raise Unauthorized(
                f"cannot read {name!r}'s admin flag from the Hub ({e}); give the service "
                "the scope read:users"
            ) from None
        self._admins[name] = (now, admin)
        return admin

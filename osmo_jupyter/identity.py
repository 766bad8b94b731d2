"""Who the caller is, in osmo's terms (a `Principal`), from the Jupyter server's identity.

Two sources:
- **The Jupyter server's own identity** (JupyterLab mode). With jupyter_server's single-user
  identity providers (its token, or a password) whoever is authenticated is the server's owner —
  the OS user it runs as — and an admin: jupyter_server makes up an anonymous name per session
  there, which must not split one person's workflows across names. With any other provider
  (JupyterHub's, a custom one) the user is `User.username`, an admin if listed in
  `OsmoConfig.admin_users`.
- **`OsmoIdentityProvider`** (headless, `jupyter osmo`; or set
  `c.ServerApp.identity_provider_class = "osmo_jupyter.identity.OsmoIdentityProvider"`):
  additionally accepts `Authorization: Bearer <token>` with an osmo personal access token or an
  OIDC JWT. Such requests count as token-authenticated (no XSRF cookie, no origin check),
  exactly like jupyter_server's own token. The server's token still works and means the owner.
"""

from __future__ import annotations

import dataclasses
import getpass
from typing import Any

from jupyter_server.auth.identity import IdentityProvider, PasswordIdentityProvider, User

from osmo_core.auth import ADMIN, USER, Principal
from osmo_core.errors import Unauthorized

_BEARER_SCHEMES = ("bearer", "token")


@dataclasses.dataclass
class OsmoUser(User):
    """A Jupyter user that carries the osmo principal it was authenticated as."""

    principal: Principal | None = None


class OsmoIdentityProvider(IdentityProvider):
    async def get_user(self, handler: Any) -> User | None:  # type: ignore[override]
        scheme, _, text = handler.request.headers.get("Authorization", "").partition(" ")
        text = text.strip()
        osmo_app = handler.settings.get("osmo_app")
        if scheme.lower() in _BEARER_SCHEMES and text and osmo_app is not None:
            svc = await osmo_app.ready()
            if svc.auth.is_ours(text):
                # A credential in a header cannot be forged cross-site: XSRF and origin rules
                # are those of jupyter_server's token — also when it fails, so the caller gets
                # our 401 with its reason rather than a complaint about a missing XSRF cookie.
                handler._token_authenticated = True
                try:
                    who = await svc.auth.authenticate(text)
                except Unauthorized as e:
                    handler._osmo_auth_error = str(e)  # the 401's reason
                    return None
                return OsmoUser(who.name, who.name, who.name, who.name[:1].upper(), principal=who)
        return await super()._get_user(handler)


_SINGLE_USER = (IdentityProvider, PasswordIdentityProvider, OsmoIdentityProvider)


def principal_of(user: User, identity_provider: IdentityProvider, admins: set[str]) -> Principal:
    if isinstance(user, OsmoUser) and user.principal is not None:
        return user.principal
    if type(identity_provider) in _SINGLE_USER:
        return Principal(getpass.getuser(), ADMIN, via="jupyter")
    name = user.username
    return Principal(name, ADMIN if name in admins else USER, via="jupyter")

"""Who is calling, and what they may do.

- `Principal`: an authenticated user with one role, `admin` or `user`.
- `TokenManager`: personal access tokens (`osmo_<id>_<secret>`), hashed at rest, with expiry
  and revocation.
- `OIDCVerifier`: bearer JWTs checked against an issuer's published keys (JWKS).
- `SessionTokens`: short-lived JWTs this server signs (OSMO's CLI trades a token for one).
- `UserCredentials` (user_credentials.py): users' own credentials, OSMO's kinds, sealed at rest.
- `Authenticator`: a bearer token of either kind → Principal (Unauthorized with the reason).
- `policy`: the rules — users see and act on their own workflows; admins on all; pools may be
  restricted to listed users and roles.
"""

from .authenticator import Authenticator
from .oidc import OIDCVerifier
from .principal import Principal
from .sessions import SessionTokens
from .tokens import TokenManager

__all__ = ["Authenticator", "OIDCVerifier", "Principal", "SessionTokens", "TokenManager"]

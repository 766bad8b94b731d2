"""Personal access tokens and OIDC verification against a real store and a local issuer."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from osmo_core.auth import (
    Authenticator,
    OIDCVerifier,
    Principal,
    SessionTokens,
    TokenManager,
    policy,
)
from osmo_core.auth.sessions import looks_like_session
from osmo_core.config import PoolConfig
from osmo_core.errors import ConfigError, Forbidden, InputError, NotFound, Unauthorized
from osmo_core.roles import ADMIN, USER
from osmo_core.store import Store
from tests.conftest import make_config

ADMIN_P = Principal("root", ADMIN)
ALICE = Principal("alice", USER)
BOB = Principal("bob", USER)


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'osmo.db'}").open()
    yield s
    s.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_token_verifies_and_only_its_hash_is_stored(store, tmp_path):
    tokens = TokenManager(store)
    text, record = tokens.create(ADMIN_P, user="alice", name="laptop")
    assert text.startswith("osmo_") and record["user"] == "alice" and "hash" not in record
    assert tokens.verify(text) == Principal("alice", USER, via="token")
    assert text.encode() not in (tmp_path / "osmo.db").read_bytes()
    assert store.get_token(record["id"])["last_used_at"] is not None


def test_unknown_tampered_expired_and_revoked_tokens_are_refused(store):
    clock = Clock()
    tokens = TokenManager(store, clock=clock)
    text, record = tokens.create(ALICE, name="ci", expires_in=3600)
    for bad in ("osmo_nothing", text[:-1] + ("A" if text[-1] != "A" else "B"), "x" + text):
        with pytest.raises(Unauthorized, match="unknown personal access token"):
            tokens.verify(bad)
    clock.now += 3601
    with pytest.raises(Unauthorized, match=f"token {record['id']} expired at .*create a new one"):
        tokens.verify(text)
    other, rec2 = tokens.create(ALICE, name="other")
    tokens.revoke(rec2["id"], ALICE)
    with pytest.raises(Unauthorized, match="has been revoked"):
        tokens.verify(other)


def test_users_manage_their_own_tokens_and_admins_everyones(store):
    tokens = TokenManager(store)
    _, a = tokens.create(ALICE, name="a")
    _, b = tokens.create(ADMIN_P, user="bob", name="b")
    with pytest.raises(Forbidden, match="only an admin"):
        tokens.create(ALICE, user="bob", name="x")
    with pytest.raises(Forbidden, match="only an admin"):
        tokens.create(ALICE, name="x", role=ADMIN)
    assert [t["id"] for t in tokens.list(ALICE)] == [a["id"]]
    assert {t["id"] for t in tokens.list(ADMIN_P)} == {a["id"], b["id"]}
    with pytest.raises(Forbidden):
        tokens.list(ALICE, user="bob")
    with pytest.raises(Forbidden, match="belongs to another user"):
        tokens.revoke(b["id"], ALICE)
    with pytest.raises(NotFound):
        tokens.revoke("nope", ALICE)
    assert tokens.revoke(b["id"], ADMIN_P)["revoked_at"] is not None


def test_bad_token_requests_name_every_field(store):
    with pytest.raises(InputError) as e:
        TokenManager(store).create(ADMIN_P, user="../x", name="", role="root", expires_in=-1)
    assert {p.field for p in e.value.problems} == {"user", "name", "role", "expires_in"}


def test_pool_allow_lists():
    open_pool = PoolConfig("local", "local", "local", {})
    gpu = PoolConfig("gpu", "local", "local", {}, users=frozenset({"carol"}), roles=())
    policy.check_pool(ALICE, open_pool)
    policy.check_pool(Principal("carol"), gpu)
    policy.check_pool(ADMIN_P, gpu)
    with pytest.raises(Forbidden, match=r"pool 'gpu' is open to user carol; 'alice' \(role user\)"):
        policy.check_pool(ALICE, gpu)
    assert policy.list_filter(ALICE, None) == "alice"
    assert policy.list_filter(ADMIN_P, None) is None
    with pytest.raises(Forbidden):
        policy.check_owner(BOB, "alice", "wf-1")
    policy.check_owner(ADMIN_P, "alice", "wf-1")


def test_pool_group_allow_list_and_hub_group_roles(tmp_path):
    """JupyterHub's groups (a principal's `groups`) open pools that name them."""
    cfg = make_config(
        tmp_path,
        pools={"gpu": {"backend": "local", "groups": ["vision"]}},
        default_pool="gpu",
        hub_group_roles={"osmo-admins": "admin"},
    )
    gpu = cfg.pool_configs()["gpu"]
    policy.check_pool(Principal("dana", groups=("vision", "x")), gpu)
    with pytest.raises(Forbidden, match=r"open to group vision; 'alice' \(role user\)"):
        policy.check_pool(ALICE, gpu)
    with pytest.raises(ConfigError, match=r"hub_group_roles.osmo-admins: unknown role 'boss'"):
        make_config(tmp_path, hub_group_roles={"osmo-admins": "boss"})
    with pytest.raises(ConfigError, match=r"pools.gpu.groups: expected a list of names"):
        pools = {"gpu": {"backend": "local", "groups": "vision"}}
        make_config(tmp_path, pools=pools, default_pool="gpu").pool_configs()


async def test_oidc_happy_path_roles_and_key_rotation(oidc_issuer):
    v = OIDCVerifier(oidc_issuer.url, "osmo")  # keys found through discovery
    assert await v.verify(oidc_issuer.sign("dana")) == Principal("dana", USER, via="oidc")
    assert (await v.verify(oidc_issuer.sign("erin", roles=["admin"]))).role == ADMIN
    fetches = oidc_issuer.jwks_fetches
    oidc_issuer.rotate()
    v.refetch_every = 0  # a new kid is fetched at once
    assert (await v.verify(oidc_issuer.sign("dana"))).name == "dana"
    assert oidc_issuer.jwks_fetches == fetches + 1


async def test_oidc_unhappy_paths(oidc_issuer):
    v = OIDCVerifier(oidc_issuer.url, "osmo")
    cases = {
        "has expired": oidc_issuer.sign(expires_in=-120),
        "not for audience 'osmo'": oidc_issuer.sign(aud="someone-else"),
        "not issued by": oidc_issuer.sign(iss="http://127.0.0.1:1/evil"),
        "invalid OIDC token": oidc_issuer.sign(key=rsa.generate_private_key(65537, 2048)),
        "is not one of the issuer's keys": oidc_issuer.sign(
            key=rsa.generate_private_key(65537, 2048), kid="forged"
        ),
        "malformed bearer token": "a.b.c",
    }
    for reason, token in cases.items():
        with pytest.raises(Unauthorized, match=reason):
            await v.verify(token)
    # forged key ids do not make us hammer the issuer
    before = oidc_issuer.jwks_fetches
    for _ in range(5):
        with pytest.raises(Unauthorized):
            await v.verify(
                oidc_issuer.sign(kid="forged", key=rsa.generate_private_key(65537, 2048))
            )
    assert oidc_issuer.jwks_fetches == before


async def test_oidc_issuer_unreachable():
    v = OIDCVerifier("http://127.0.0.1:9", "osmo")
    with pytest.raises(Unauthorized, match="cannot fetch the OIDC issuer's keys"):
        await v.verify(_unsigned_looking_jwt())


def _unsigned_looking_jwt() -> str:
    import jwt

    return jwt.encode({"sub": "x"}, "secret-secret-secret-secret-32by", algorithm="HS256")


async def test_authenticator_dispatches_and_applies_admin_users(store, tmp_path, oidc_issuer):
    config = make_config(tmp_path, oidc_issuer=oidc_issuer.url, admin_users={"dana"})
    auth = Authenticator(store, config)
    pat, _ = auth.tokens.create(ADMIN_P, user="alice", name="x")
    assert await auth.authenticate(pat) == Principal("alice", USER, via="token")
    assert await auth.authenticate(oidc_issuer.sign("dana")) == Principal("dana", ADMIN, "oidc")
    assert not auth.is_ours("a-jupyter-server-token")
    with pytest.raises(Unauthorized, match="unknown bearer token"):
        await auth.authenticate("a-jupyter-server-token")


def test_session_tokens_are_signed_here_and_expire(tmp_path):
    clock = Clock()
    key = tmp_path / "data" / "session.key"
    sessions = SessionTokens(key, ttl=60, clock=clock)
    text, expires = sessions.issue(ALICE)
    assert expires == clock.now + 60
    assert key.stat().st_mode & 0o777 == 0o600 and len(key.read_bytes()) == 32
    assert looks_like_session(text) and not looks_like_session("osmo_x_y")
    now = SessionTokens(key, ttl=60)  # the same key, read back; the real clock
    assert now.verify(now.issue(ALICE)[0]) == Principal("alice", USER, via="session")
    with pytest.raises(Unauthorized, match="expired"):
        now.verify(text)  # issued at 1,000,000 s: long expired (jwt checks the real time)
    other = SessionTokens(tmp_path / "other.key", ttl=3600).issue(ALICE)[0]
    with pytest.raises(Unauthorized, match="invalid session token"):  # another server's key
        SessionTokens(key, ttl=3600).verify(other)
    header, payload, sig = SessionTokens(key, ttl=3600).issue(ALICE)[0].split(".")
    forged = payload.replace(payload[5], "A" if payload[5] != "A" else "B", 1)
    with pytest.raises(Unauthorized, match="invalid session token"):
        SessionTokens(key, ttl=3600).verify(f"{header}.{forged}.{sig}")


async def test_the_authenticator_takes_its_own_session_tokens(store, tmp_path, oidc_issuer):
    config = make_config(tmp_path, oidc_issuer=oidc_issuer.url, admin_users={"alice"})
    auth = Authenticator(store, config)
    text, _ = auth.sessions.issue(BOB)
    assert auth.is_ours(text) and auth.sessions.key_path == tmp_path / "session.key"
    assert await auth.authenticate(text) == Principal("bob", USER, via="session")
    # the role was settled at the exchange: the session carries it, admin_users or not
    assert await auth.authenticate(auth.sessions.issue(ALICE)[0]) == Principal(
        "alice", USER, via="session"
    )
    assert await auth.authenticate(oidc_issuer.sign("carol")) == Principal("carol", USER, "oidc")

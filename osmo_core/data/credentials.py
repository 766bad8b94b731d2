"""Named credentials, OSMO-style: configured on the server, referred to by name everywhere else.

    c.OsmoConfig.credentials = {
        "raw-s3": {"url": "s3://raw-bucket", "endpoint_url": "http://minio:9000",
                   "access_key_id": "...", "secret_access_key": "...", "region": "us-east-1"},
        "results": {"url": "az://results", "connection_string": "..."},  # or account_name +
        "omni": {"user": "...", "password": "..."},  #        account_key / sas_token
    }

A data credential (one with `url`, a prefix or a list of prefixes) is used for every transfer
whose URL it prefixes (the longest prefix wins), as OSMO applies data credentials on its own;
without one, each SDK's own environment variables and profiles apply. Any credential can also be
handed to a task through the spec's `credentials:` field (`{name: {ENV_VAR: key}}` or
`{name: /folder}`). Requests, specs, events and attempt records carry names only: the agent reads
the secrets from a 0600 file its backend writes (`write_file`), and masks every secret value
that appears in a task's log (`Masker`).

Who may use one: an entry may carry allow-lists `users`, `roles` and `pools` (auth/policy.py,
`may_use_credential`): with none, every submitter may (as before); with any, admins and those
listed (a user by name, a role, or a workflow in a listed pool). Submit refuses a spec that
names it, or moves data under its `url`, for anyone else. The lists never leave the server.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError, Problem
from ..roles import ROLES

FILE = "credentials.json"
_S3 = {
    "access_key_id": "key",
    "secret_access_key": "secret",
    "access_key": "secret",  # OSMO's DATA fields (auth/user_credentials.py)
    "session_token": "token",
    "endpoint_url": "endpoint_url",
    "override_url": "endpoint_url",
}
_AZURE = ("account_name", "account_key", "connection_string", "sas_token", "account_url")
_PUBLIC = frozenset(
    {"url", "endpoint_url", "region", "account_name", "account_url"}
    | {"endpoint", "override_url", "addressing_style", "registry"}  # OSMO's (user_credentials)
)
MIN_SECRET = 8  # as OSMO: shorter values are not masked (they would mask ordinary words)
POLICY = ("users", "roles", "pools")  # allow-lists: who may use it, not part of the secret


def validate(value: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Check the OsmoConfig.credentials trait; ConfigError naming each bad entry."""
    problems: list[Problem] = []
    for name, cred in value.items():
        where = f"OsmoConfig.credentials.{name}"
        if not isinstance(cred, dict) or not cred:
            problems.append(Problem("expected a non-empty dict of strings", field=where))
            continue
        for k, v in cred.items():
            if k in POLICY:
                problems += _allow_list_problems(k, v, f"{where}.{k}")
                continue
            ok = isinstance(v, str) or (
                k == "url" and isinstance(v, list) and all(isinstance(u, str) for u in v)
            )
            if not ok:
                problems.append(Problem(f"{k}: expected a string", field=f"{where}.{k}"))
        if ("access_key_id" in cred) != ("secret_access_key" in cred):
            problems.append(Problem("access_key_id and secret_access_key go together", field=where))
    if problems:
        raise ConfigError(problems)
    return {str(k): dict(v) for k, v in value.items()}


def _allow_list_problems(key: str, value: Any, where: str) -> list[Problem]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
        return [Problem(f"{key}: expected a list of names, got {value!r}", field=where)]
    if key == "roles" and set(value) - set(ROLES):
        bad = sorted(set(value) - set(ROLES))
        return [Problem(f"unknown roles {bad}", field=where, hint=f"roles: {', '.join(ROLES)}")]
    return []


def pool_problems(creds: Mapping[str, Mapping[str, Any]], pools: Iterable[str]) -> list[Problem]:
    """A credential's `pools` must name configured pools (a typo would lock everyone out)."""
    known = set(pools)
    return [
        Problem(
            f"pools {sorted(set(c['pools']) - known)} are not configured",
            field=f"OsmoConfig.credentials.{name}.pools",
            hint=f"configured: {', '.join(sorted(known))}",
        )
        for name, c in creds.items()
        if isinstance(c.get("pools"), list | tuple) and set(c["pools"]) - known
    ]


def without_policy(creds: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The credentials as agents get them: secrets and urls, not who may use them."""
    return {n: {k: v for k, v in c.items() if k not in POLICY} for n, c in creds.items()}


def _prefixes(cred: Mapping[str, Any]) -> list[str]:
    url = cred.get("url")
    return [url] if isinstance(url, str) else list(url or [])


def match(creds: Mapping[str, Mapping[str, Any]], url: str) -> str | None:
    """The name of the data credential whose `url` is the longest prefix of `url`, if any."""
    best: tuple[int, str] | None = None
    for name, cred in creds.items():
        for prefix in _prefixes(cred):
            p = prefix.rstrip("/")
            if (url == p or url.startswith(p + "/")) and (best is None or len(p) > best[0]):
                best = (len(p), name)
    return best[1] if best else None


def match_resolved(creds: Mapping[str, Mapping[str, Any]], written: str, url: str) -> str | None:
    """`match` for `url`, which the spec wrote as `written` (with template tokens, resolved at
    launch): a credential with allow-lists only if `written` matched it already (the one submit
    checked), so a token never reaches a restricted credential unchecked (then: none)."""
    name = match(creds, url)
    if name is None or name == match(creds, written):
        return name
    return None if any(creds[name].get(k) for k in POLICY) else name


def storage_options(cred: Mapping[str, Any] | None, url: str) -> dict[str, Any]:
    """open_store() options for `url` from a credential (empty: the SDK's own defaults)."""
    if not cred:
        return {}
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("s3", "s3a"):
        out: dict[str, Any] = {_S3[k]: cred[k] for k in _S3 if cred.get(k)}
        if cred.get("region"):
            out["client_kwargs"] = {"region_name": cred["region"]}
        if cred.get("addressing_style") in ("virtual", "path"):  # OSMO's DATA field
            out["config_kwargs"] = {"s3": {"addressing_style": cred["addressing_style"]}}
        return out
    if scheme in ("az", "abfs", "abfss"):
        return {k: cred[k] for k in _AZURE if cred.get(k)}
    return {}


def secret_values(creds: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every value worth masking: all but the public keys, plus the key and signature inside
    an Azure connection string."""
    out: set[str] = set()
    for cred in creds:
        for k, v in cred.items():
            if k in _PUBLIC or not isinstance(v, str):
                continue
            out.add(v)
            if k == "connection_string":
                out.update(re.findall(r"(?:AccountKey|SharedAccessSignature)=([^;]+)", v))
    return sorted((s for s in out if len(s) >= MIN_SECRET), key=len, reverse=True)


class Masker:
    """Replaces every occurrence of a secret value with ****."""

    def __init__(self, secrets: Iterable[str]):
        ordered = sorted(set(secrets), key=len, reverse=True)  # longest first: no partial masks
        self._re = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def __bool__(self) -> bool:
        return self._re is not None

    def __call__(self, text: str) -> str:
        return self._re.sub("****", text) if self._re is not None else text


def write_file(root: Path, creds: Mapping[str, Mapping[str, Any]]) -> Path:
    """Write ROOT/credentials.json readable by its owner only (atomically: an agent may be
    reading it); removed when there are no credentials."""
    path = root / FILE
    if not creds:
        path.unlink(missing_ok=True)
        return path
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{FILE}.{uuid.uuid4().hex}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(creds, f)
    os.replace(tmp, path)
    return path


class CredentialFile:
    """The agent's view of ROOT/credentials.json, re-read when the file changes."""

    def __init__(self, root: Path):
        self.path = root / FILE
        self._stamp: tuple[int, int] | None = None
        self._creds: dict[str, dict[str, Any]] = {}
        self._masker = Masker(())

    def load(self) -> dict[str, dict[str, Any]]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._stamp, self._creds, self._masker = None, {}, Masker(())
            return self._creds
        stamp = (st.st_mtime_ns, st.st_ino)
        if stamp != self._stamp:
            self._creds = json.loads(self.path.read_text())
            self._masker = Masker(secret_values(self._creds.values()))
            self._stamp = stamp
        return self._creds

    def masker(self, own: Iterable[Mapping[str, Any]] = ()) -> Masker:
        """Masks the secrets of every configured credential (a task may print any of them,
        e.g. from an inherited SDK variable or a file it was given), and of `own` (the task
        owner's credentials, user_credentials.py)."""
        creds = self.load()
        own = list(own)
        return Masker(secret_values([*creds.values(), *own])) if own else self._masker

"""Users' own credentials, OSMO's kinds, beside the admin's named ones (data/credentials.py).

    DATA      endpoint (s3://bucket or az://container, optionally with a path), access_key_id,
              access_key; optional region, override_url (an S3-compatible service's HTTP URL),
              addressing_style. Used for every transfer of the user's tasks whose URL the
              endpoint prefixes (OSMO: the URL's bucket profile; the longest prefix wins).
    REGISTRY  auth (or password), optional registry (default docker.io) and username: used to
              pull the images of the user's tasks from that registry.
    GENERIC   any key=value pairs, handed to a task by its `credentials:` field.

Any kind can be named in a task's `credentials:` (env or 0600 files, as the admin's). A name
resolves to the task owner's own credential first, then to the admin's of that name, so a user
may shadow an admin's name but never reach another user's. OSMO's uniqueness holds: setting a
DATA endpoint or a REGISTRY registry the user already has under another name replaces that one.

At rest the secret fields are sealed with AES-GCM under `<data dir>/secrets.key` (256 random
bits, 0600, made on first use), bound to the owner and name. The store keeps the public fields
in the clear (what `list` shows); no API returns a secret. Secrets reach only the agent running
the owner's task, inside its launch request (never its argv, records or events); the agent
masks them in the task's log. Losing secrets.key loses the secrets, not the names: a task then
fails to launch saying so, and each user sets their credentials again.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.engine import RowMapping

from ..errors import ConfigError, Forbidden, InputError, NotFound, OsmoError, Problem
from ..store import Store
from .keyfile import load_key
from .principal import Principal

KINDS = ("DATA", "REGISTRY", "GENERIC")
NAME = re.compile(r"^[a-zA-Z]([a-zA-Z0-9_-]*[a-zA-Z0-9])?$")  # OSMO's CREDNAMEREGEX
_NAME_HINT = "letters, digits, - and _, starting with a letter and not ending with - or _"
_ENDPOINT = re.compile(r"^(s3|az)://[^/\s]+(/\S*)?$")
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")
MAX_VALUE = 64 * 1024  # an ssh key or a service-account file, not a data set
# kind -> (required fields, optional fields, public fields); GENERIC takes any keys, all secret
_FIELDS: dict[str, tuple[frozenset[str], frozenset[str], frozenset[str]]] = {
    "DATA": (
        frozenset({"endpoint", "access_key_id", "access_key"}),
        frozenset({"region", "override_url", "addressing_style"}),
        frozenset({"endpoint", "region", "override_url", "addressing_style"}),
    ),
    "REGISTRY": (frozenset({"auth"}), frozenset({"registry", "username"}), frozenset({"registry"})),
}
_ADDRESSING = ("virtual", "path", "auto")


class UnsealError(OsmoError):
    """A stored secret cannot be opened: secrets.key was replaced or lost."""


def validate(kind: str, payload: Mapping[str, Any], where: str) -> dict[str, str]:
    """The payload of a credential of `kind`, normalised (OSMO's `password` is `auth`, a DATA
    endpoint loses its trailing /); InputError with one located problem per bad field."""
    if kind not in KINDS:
        raise InputError(Problem(f"unknown type {kind!r}", field="type", hint=f"one of {KINDS}"))
    problems: list[Problem] = []
    out: dict[str, str] = {}
    if not isinstance(payload, Mapping) or not payload:
        raise InputError(Problem("expected a non-empty object of key: value", field=where))
    for key, value in payload.items():
        field = f"{where}.{key}"
        if not isinstance(key, str) or not _KEY.match(key):
            problems.append(Problem(f"invalid key {key!r}", field=field, hint="a name: [A-Za-z_]…"))
        elif not isinstance(value, str) or not value:
            problems.append(Problem("expected a non-empty string", field=field))
        elif len(value) > MAX_VALUE:
            problems.append(Problem(f"longer than {MAX_VALUE} characters", field=field))
        else:
            out["auth" if kind == "REGISTRY" and key == "password" else key] = value
    if kind in _FIELDS:
        required, optional, _ = _FIELDS[kind]
        known = required | optional
        for key in sorted(set(out) - known):
            problems.append(
                Problem(
                    f"unknown field {key!r} for a {kind} credential",
                    field=f"{where}.{key}",
                    hint=f"fields: {', '.join(sorted(known))}",
                )
            )
        for key in sorted(required - set(out)):
            problems.append(Problem(f"a {kind} credential needs {key!r}", field=f"{where}.{key}"))
    if kind == "DATA" and "endpoint" in out:
        out["endpoint"] = out["endpoint"].rstrip("/")
        if not _ENDPOINT.match(out["endpoint"]):
            problems.append(
                Problem(
                    f"endpoint {out['endpoint']!r} is not a storage URL this server reads",
                    field=f"{where}.endpoint",
                    hint="s3://BUCKET[/PATH] or az://CONTAINER[/PATH]; an S3-compatible "
                    "service's http(s) URL goes in override_url",
                )
            )
    if kind == "DATA" and out.get("addressing_style", "auto") not in _ADDRESSING:
        problems.append(
            Problem(
                f"addressing_style {out['addressing_style']!r}",
                field=f"{where}.addressing_style",
                hint=f"one of {', '.join(_ADDRESSING)}",
            )
        )
    if problems:
        raise InputError(problems)
    return out


def agent_form(kind: str, payload: Mapping[str, str]) -> dict[str, str]:
    """The credential as agents use it (data/credentials.py's keys): OSMO's fields, plus for
    DATA the `url` it applies to and, on Azure, the account's name and key."""
    out = dict(payload)
    if kind == "DATA":
        out["url"] = payload["endpoint"]
        if payload["endpoint"].startswith("az://"):
            out.update(account_name=payload["access_key_id"], account_key=payload["access_key"])
    return out


def public_view(kind: str, public: Mapping[str, Any]) -> dict[str, str]:
    """What submit-time checks see of a credential (its keys and the URL it applies to),
    without its secrets."""
    view = dict.fromkeys(public.get("keys", ()), "")
    if kind == "DATA":
        view["url"] = public["endpoint"]
    return view


class UserCredentials:
    """Set, list, delete and resolve users' credentials."""

    def __init__(self, store: Store, key_path: Path, clock: Callable[[], float] = time.time):
        self.store = store
        self.key_path = key_path
        self.clock = clock
        self._aead: AESGCM | None = None

    @property
    def aead(self) -> AESGCM:
        if self._aead is None:  # made on first use: a server nobody stores a secret in has none
            try:
                self._aead = AESGCM(load_key(self.key_path))
            except ValueError as e:
                raise ConfigError(
                    Problem(f"{e}; restore it or remove it", field="secrets.key")
                ) from None
        return self._aead

    @staticmethod
    def _aad(user: str, name: str) -> bytes:
        return f"{user}\0{name}".encode()

    def _seal(self, user: str, name: str, secret: Mapping[str, str]) -> str:
        nonce = os.urandom(12)
        sealed = self.aead.encrypt(nonce, json.dumps(secret).encode(), self._aad(user, name))
        return base64.b64encode(nonce + sealed).decode()

    def _unseal(self, row: RowMapping) -> dict[str, str]:
        blob = base64.b64decode(row["sealed"])
        try:
            text = self.aead.decrypt(blob[:12], blob[12:], self._aad(row["user"], row["name"]))
        except InvalidTag:
            raise UnsealError(
                f"credential {row['name']!r} of {row['user']!r} cannot be opened with "
                f"{self.key_path} (the key was replaced or lost); set it again"
            ) from None
        secret: dict[str, str] = json.loads(text)
        return secret

    def set(
        self, who: Principal, name: str, kind: str, payload: Mapping[str, Any], where: str
    ) -> dict[str, Any]:
        """Create or replace `who`'s credential `name`; its public record. `where`: the
        request's field holding the payload, for located errors."""
        if not isinstance(name, str) or not NAME.match(name) or len(name) > 128:
            raise InputError(Problem(f"invalid credential name {name!r}", "name", hint=_NAME_HINT))
        fields = validate(kind, payload, where)
        public_keys = _FIELDS[kind][2] if kind in _FIELDS else frozenset()
        public: dict[str, Any] = {k: v for k, v in fields.items() if k in public_keys}
        public["keys"] = sorted(agent_form(kind, fields))  # {ENV: key} is checked at submit
        secret = {k: v for k, v in fields.items() if k not in public_keys}
        same = {"DATA": "endpoint", "REGISTRY": "registry"}.get(kind)
        replaces = [
            r["name"]
            for r in self.store.credentials_of(who.name)
            if same and r["kind"] == kind and json.loads(r["public"]).get(same) == public.get(same)
        ]
        now = self.clock()
        old = {r["name"]: r for r in self.store.credentials_of(who.name)}.get(name)
        row = {
            "user": who.name,
            "name": name,
            "kind": kind,
            "public": json.dumps(public),
            "sealed": self._seal(who.name, name, secret),
            "created_at": old["created_at"] if old else now,
            "updated_at": now,
        }
        self.store.put_credential(row, [n for n in replaces if n != name])
        return _record(row)

    def list(self, who: Principal, user: str | None = None) -> list[dict[str, Any]]:
        """Public records: `who`'s own; an admin may ask for one user's or (user "*") all."""
        if user not in (None, who.name) and not who.is_admin:
            raise Forbidden(f"{who.name!r} may only list their own credentials")
        rows = self.store.credentials_of(None if user == "*" else user or who.name)
        return [_record(r) for r in rows]

    def delete(self, who: Principal, name: str, user: str | None = None) -> dict[str, Any]:
        """Remove a credential of `who` (an admin: of `user`); its public record."""
        owner = user or who.name
        if owner != who.name and not who.is_admin:
            raise Forbidden(f"{who.name!r} may only delete their own credentials")
        rows = {r["name"]: r for r in self.store.credentials_of(owner)}
        if name not in rows or not self.store.delete_credential(owner, name):
            raise NotFound(f"{owner!r} has no credential {name!r}")
        return _record(rows[name])

    def views(self, user: str) -> dict[str, dict[str, str]]:
        """`user`'s credentials as submit-time checks see them (no secrets, nothing opened)."""
        return {
            r["name"]: public_view(r["kind"], json.loads(r["public"]))
            for r in self.store.credentials_of(user)
        }

    def for_launch(self, user: str) -> dict[str, tuple[str, dict[str, str]]]:
        """`user`'s credentials, opened: name -> (kind, agent form). UnsealError when one
        cannot be opened."""
        out = {}
        for r in self.store.credentials_of(user):
            public = {k: v for k, v in json.loads(r["public"]).items() if k != "keys"}
            out[r["name"]] = (r["kind"], agent_form(r["kind"], {**public, **self._unseal(r)}))
        return out


def _record(row: Mapping[str, Any] | RowMapping) -> dict[str, Any]:
    public = json.loads(row["public"])
    return {
        "name": row["name"],
        "user": row["user"],
        "type": row["kind"],
        "fields": {k: v for k, v in public.items() if k != "keys"},
        "keys": public["keys"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }

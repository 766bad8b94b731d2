"""OSMO's small routes: version, profile settings, tags, credentials (users' own, of OSMO's
kinds, in osmo_core/auth/user_credentials.py; beside them, the admin's named ones).

What this server does not keep or do is refused with the reason, never accepted and dropped: a
per-user default pool (the server's `OsmoConfig.default_pool` is everyone's), notification
settings (no notifications), workflow tags, OSMO's rsync (it needs an rsync daemon in the
task; this project's own `osmo workflow rsync` syncs over SFTP instead), and any other route
of OSMO's API.
"""

from __future__ import annotations

from typing import Any

import osmo_core
from osmo_core.auth import policy
from osmo_core.errors import InputError, NotFound, Problem

from .base import OsmoCliHandler, osmo_route, public_route
from .models import CredentialBody, ProfileUpdate


class VersionHandler(OsmoCliHandler):
    """`GET api/version`: this server's version in OSMO's fields."""

    @osmo_route
    async def get(self) -> None:
        parts = [*osmo_core.__version__.split("."), "0", "0"][:3]
        self.reply(dict(zip(("major", "minor", "revision"), parts, strict=True)) | {"hash": ""})


class ProfileHandler(OsmoCliHandler):
    """`GET|POST api/profile/settings`."""

    @osmo_route
    async def get(self) -> None:
        svc = await self.service()
        pools = sorted(p.name for p in svc.pools.values() if policy.may_see_pool(self.who, p))
        self.reply(
            {
                "profile": {
                    "username": self.who.name,
                    "email_notification": False,
                    "slack_notification": False,
                    "pool": svc.config.default_pool,
                },
                "pools": pools,
                "roles": [self.who.role],
            }
        )

    @osmo_route
    async def post(self) -> None:
        req = self.body_model(ProfileUpdate)
        svc = await self.service()
        problems = []
        if req.pool is not None and req.pool != svc.config.default_pool:
            problems.append(
                Problem(
                    f"this server keeps no default pool per user; its default, "
                    f"{svc.config.default_pool!r}, is everyone's",
                    field="pool",
                    hint="pass `--pool` to submit, or ask an admin to set OsmoConfig.default_pool",
                )
            )
        for field in ("email_notification", "slack_notification"):
            if getattr(req, field):
                problems.append(Problem("this server sends no notifications", field=field))
        if problems:
            raise InputError(problems)
        self.reply({})


def _refuse_tags() -> InputError:
    return InputError([Problem("workflow tags are not kept by this server", field="tags")])


class TagsHandler(OsmoCliHandler):
    """`GET api/tag`: the tags an admin offers; none here."""

    @osmo_route
    async def get(self) -> None:
        self.reply({"tags": []})


class WorkflowTagHandler(OsmoCliHandler):
    """`POST api/workflow/{id}/tag`: refused (module docstring)."""

    @osmo_route
    async def post(self, wf_id: str) -> None:
        await self.workflow_for(wf_id)  # 404/403 first, as for any workflow
        raise _refuse_tags()


def _kind(cred: dict[str, Any]) -> str:
    """OSMO's credential kinds of an admin's credential: DATA (used for storage URLs),
    REGISTRY, GENERIC."""
    if cred.get("url"):
        return "DATA"
    return "REGISTRY" if cred.get("registry") else "GENERIC"


def _entry(record: dict[str, Any]) -> dict[str, Any]:
    """A user's credential (UserCredentials' record) as OSMO lists it: the profile is a DATA
    credential's endpoint, a REGISTRY's registry."""
    fields = record["fields"]
    return {
        "cred_name": record["name"],
        "cred_type": record["type"],
        "profile": fields.get("endpoint") or fields.get("registry"),
        "owner": record["user"],
    }


def _unwrap(body: CredentialBody) -> tuple[str, dict[str, Any], str]:
    """(type, payload, the body's field holding it) of OSMO's `credential set` body."""
    given = [k for k, v in body if v is not None]
    if len(given) != 1:
        raise InputError(
            Problem(
                f"expected exactly one of {', '.join(CredentialBody.model_fields)}, got "
                f"{', '.join(given) or 'none'}",
                field="body",
            )
        )
    if body.generic_credential is not None:
        return "GENERIC", body.generic_credential.credential, "generic_credential.credential"
    if body.data_credential is not None:
        return "DATA", body.data_credential, "data_credential"
    assert body.registry_credential is not None
    return "REGISTRY", body.registry_credential, "registry_credential"


class CredentialsHandler(OsmoCliHandler):
    """`GET api/credentials`: the caller's own credentials, then the admin's named ones the
    caller may use and has not shadowed with one of the same name (names, kinds and
    profiles; never a secret)."""

    @osmo_route
    async def get(self) -> None:
        svc = await self.service()
        visible = [_entry(r) for r in svc.credentials.list(self.who)]
        own = {e["cred_name"] for e in visible}
        pools = list(svc.pools)
        for name, cred in sorted(svc.config.credentials.items()):
            if name in own or not any(policy.may_use_credential(self.who, cred, p) for p in pools):
                continue
            url = cred.get("url") or ""
            visible.append(
                {
                    "cred_name": name,
                    "cred_type": _kind(cred),
                    "profile": url if isinstance(url, str) else ", ".join(url),
                    "owner": "admin",
                }
            )
        self.reply({"credentials": visible})


class CredentialHandler(OsmoCliHandler):
    """`POST api/credentials/{name}` (`osmo credential set`: create or replace) and `DELETE`
    (`osmo credential delete`: answers the deleted entry, as OSMO)."""

    @osmo_route
    async def post(self, name: str) -> None:
        kind, payload, where = _unwrap(self.body_model(CredentialBody))
        (await self.service()).credentials.set(self.who, name, kind, payload, where)
        self.reply(None)

    @osmo_route
    async def delete(self, name: str) -> None:
        record = (await self.service()).credentials.delete(self.who, name)
        self.reply({"credentials": [_entry(record)]})


class RsyncHandler(OsmoCliHandler):
    """`POST api/workflow/{id}/rsync/task/{task}` and `GET api/plugins/configs` (what OSMO's
    `workflow rsync` asks first): refused (module docstring)."""

    @osmo_route
    async def get(self, **_: str) -> None:
        raise _refuse_rsync()

    @osmo_route
    async def post(self, **_: str) -> None:
        raise _refuse_rsync()


def _refuse_rsync() -> InputError:
    return InputError(
        [
            Problem(
                "OSMO's `workflow rsync` needs an rsync daemon in the task, which this server "
                "does not run",
                field="rsync",
                hint="use this project's own `osmo workflow rsync` (SFTP to the task), from "
                "a second `osmo` command (docs/osmo-cli.md)",
            )
        ]
    )


class UnknownHandler(OsmoCliHandler):
    """Any other `api/...` route of OSMO's: 404 in OSMO's error shape, not an HTML page."""

    SUPPORTED_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH")

    @public_route
    async def get(self) -> None:
        raise NotFound(
            f"{self.request.method} {self.request.path}: this route of OSMO's API is not "
            "served here (docs/osmo-cli.md lists what is)"
        )

    post = put = delete = patch = get

"""OSMO's small routes: version, profile settings, tags, credentials.

What this server does not keep or do is refused with the reason, never accepted and dropped: a
per-user default pool (the server's `OsmoConfig.default_pool` is everyone's), notification
settings (no notifications), workflow tags, and per-user credentials (credentials are the
admin's, named in `OsmoConfig.credentials`; storing users' secrets needs a secret store this
server does not have), OSMO's rsync (it needs an rsync daemon in the task; this project's
own `osmo workflow rsync` syncs over SFTP instead), and any other route of OSMO's API.
"""

from __future__ import annotations

from typing import Any

import osmo_core
from osmo_core.auth import policy
from osmo_core.errors import InputError, NotFound, Problem

from .base import OsmoCliHandler, osmo_route, public_route
from .models import ProfileUpdate


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
    """OSMO's credential kinds: DATA (used for storage URLs), REGISTRY, GENERIC."""
    if cred.get("url"):
        return "DATA"
    return "REGISTRY" if cred.get("registry") else "GENERIC"


class CredentialsHandler(OsmoCliHandler):
    """`GET api/credentials`: the admin's named credentials the caller may use (names, kinds
    and storage prefixes; never a secret)."""

    @osmo_route
    async def get(self) -> None:
        svc = await self.service()
        pools = list(svc.pools)
        visible = []
        for name, cred in sorted(svc.config.credentials.items()):
            if not any(policy.may_use_credential(self.who, cred, p) for p in pools):
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
    """`POST|DELETE api/credentials/{name}`: refused (module docstring)."""

    @osmo_route
    async def post(self, name: str) -> None:
        raise self._refusal(name)

    @osmo_route
    async def delete(self, name: str) -> None:
        raise self._refusal(name)

    @staticmethod
    def _refusal(name: str) -> InputError:
        return InputError(
            [
                Problem(
                    f"credential {name!r}: this server keeps no per-user credentials",
                    field="credentials",
                    hint="an admin names credentials in OsmoConfig.credentials (allow-lists "
                    "say who may use each); `osmo credential list` shows yours",
                )
            ]
        )


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

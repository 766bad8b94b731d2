"""`osmo login URL --token TOKEN` and `osmo logout`: keep (or forget) a server for the remote
commands. Login checks the token (`GET version`, `GET me`) and keeps URL and token in
`$XDG_CONFIG_HOME/osmo/credentials.json` (0600)."""

from __future__ import annotations

import argparse
from typing import Any

from .common import EXIT_OK, Output
from .connect import talk_to_server


def register(top: Any) -> None:
    li = top.add_parser("login", help="keep a server's URL and token for the remote commands")
    li.add_argument("url", help="the server, e.g. http://host:8888")
    li.add_argument("--token", required=True, help="an API token the server accepts")
    li.set_defaults(run=_login)
    top.add_parser("logout", help="forget the stored server and token").set_defaults(run=_logout)


async def _login(args: argparse.Namespace, out: Output) -> int:
    async def body() -> int:
        from ..client import Client, Credentials

        client = Client(args.url, args.token)
        version = client.get("version")
        me = client.get("me")
        path = Credentials(client.url, args.token).save()
        out.info(f"credentials saved in {path}")
        server = version.get("version", "?") if isinstance(version, dict) else "?"
        out.result(
            {"url": client.url, "version": server, "user": me["name"], "role": me["role"]},
            f"logged in to {client.url} (osmo {server}) as {me['name']} ({me['role']})",
        )
        return EXIT_OK

    return await talk_to_server(args, out, body)


async def _logout(args: argparse.Namespace, out: Output) -> int:
    async def body() -> int:
        from ..client import Credentials

        removed = Credentials.remove()
        out.info("logged out" if removed else "not logged in")
        return EXIT_OK

    return await talk_to_server(args, out, body)

"""`osmo version`: this CLI's version, and the logged-in server's."""

from __future__ import annotations

import argparse
from typing import Any

from .. import __version__
from .common import EXIT_OK, Output, add_format
from .connect import talk_to_server


def register(top: Any) -> None:
    v = top.add_parser("version", help="this CLI's version, and the server's when logged in")
    add_format(v)
    v.set_defaults(run=_version)


async def _version(args: argparse.Namespace, out: Output) -> int:
    async def body() -> int:
        from ..client import ApiError, Client, Credentials, Unreachable

        info: dict[str, Any] = {"client": __version__}
        creds = Credentials.load()
        if creds is not None:
            try:
                info["server"] = Client(creds.url, creds.token).get("version")["version"]
                info["url"] = creds.url
            except (ApiError, Unreachable) as e:
                info["server_error"] = str(e)
        text = f"osmo {__version__}"
        if "server" in info:
            text += f"\nserver {info['url']}: osmo {info['server']}"
        elif "server_error" in info:
            text += f"\nserver: {info['server_error']}"
        out.result(info, text)
        return EXIT_OK

    return await talk_to_server(args, out, body)

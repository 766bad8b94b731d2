"""How the `osmo` commands that talk to a control-plane server run: against the client of the
logged-in server (`osmo login`), with the server's answers mapped to the local CLI's exit codes:
2 invalid input (a 422 from the server, located like the local validator's, or no login),
3 placement, 4 not found / conflict, 1 anything else (refused token, unreachable server).

The client is imported when such a command runs, not when the parser is built.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..errors import InputError, PlacementError, Problem, SpecError
from .common import (
    EXIT_CONFLICT,
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_OK,
    EXIT_PLACEMENT,
    Output,
    Run,
    add_format,
    name_subcommands,
    report,
    with_service,
)

if TYPE_CHECKING:
    from ..client import ApiError, Client
    from ..service import Service


async def talk_to_server(
    args: argparse.Namespace, out: Output, body: Callable[[], Awaitable[int]]
) -> int:
    """Run `body`, turning what the server (or the lack of one) says into an exit code."""
    from ..client import ApiError, NotLoggedIn, Unreachable

    file = getattr(args, "file", None)
    try:
        return await body()
    except NotLoggedIn as e:
        out.error(str(e))
        return EXIT_INVALID
    except InputError as e:
        return report(e, out)
    except Unreachable as e:
        out.error(str(e))
        return EXIT_FAILED
    except ApiError as e:
        return api_failure(e, out, file)


def with_client(command: Callable[[Client, argparse.Namespace, Output], Awaitable[int]]) -> Run:
    """A command run against the logged-in server."""

    async def run(args: argparse.Namespace, out: Output) -> int:
        async def body() -> int:
            from ..client import Client

            return await command(Client.from_credentials(), args, out)

        return await talk_to_server(args, out, body)

    return run


def logged_in() -> bool:
    """Whether `osmo login` kept a server: then `pool list` and `resource list` describe it."""
    from ..client import Credentials

    return Credentials.load() is not None


def api_failure(e: ApiError, out: Output, file: str | None) -> int:
    """Tell the user what the server refused; the exit code for it."""
    if e.status == 401:
        out.error(f"the server refused the token: {e.message}; run osmo login again")
        return EXIT_FAILED
    if e.status == 403:
        out.error(f"not allowed: {e.message}")
        return EXIT_FAILED
    if e.status in (400, 422):
        err = _input_error(e, file)
        out.problems(err)
        return EXIT_PLACEMENT if isinstance(err, PlacementError) else EXIT_INVALID
    if e.status in (404, 409):
        out.error(e.message)
        return EXIT_CONFLICT
    out.error(f"server error (HTTP {e.status}): {e.message}")
    return EXIT_FAILED


def _input_error(e: ApiError, file: str | None) -> InputError:
    """The server's details as the local validator's problems (located in the local file)."""
    problems = []
    for d in e.details:
        line, where = d.get("line"), d.get("file")
        if file and line is not None and where in (None, "<spec>"):
            where = file  # the server saw the text only; the user knows it by this name
        problems.append(
            Problem(
                message=str(d.get("message", "")),
                field=str(d.get("field") or ""),
                file=where,
                line=line,
                column=d.get("column"),
                hint=d.get("hint"),
            )
        )
    if not problems:
        problems = [Problem(e.message)]
    cls = {"placement": PlacementError, "invalid spec": SpecError}.get(e.reason or "", InputError)
    return cls(problems)


def register_listing(
    top: Any,
    name: str,
    helps: tuple[str, str],
    path: str,
    read_here: Callable[[Service], list[dict[str, Any]]],
    show: Callable[[list[dict[str, Any]], Output], None],
) -> None:
    """`osmo NAME list`: GET `path` of the logged-in server, else `read_here` of the embedded
    default (its capacity loaded first); either way shown by `show`. `helps`: the group's and
    the list command's help."""
    group = top.add_parser(name, help=helps[0])
    cmds = group.add_subparsers(dest="cmd", required=True)
    ls = cmds.add_parser("list", help=helps[1])
    add_format(ls)

    async def from_server(client: Client, args: argparse.Namespace, out: Output) -> int:
        show(client.get(path), out)
        return EXIT_OK

    async def here(service: Service, args: argparse.Namespace, out: Output) -> int:
        await service.admission.load_capacity()
        show(read_here(service), out)
        return EXIT_OK

    async def run(args: argparse.Namespace, out: Output) -> int:
        if logged_in():
            return await with_client(from_server)(args, out)
        return await with_service(here)(args, out)

    ls.set_defaults(run=run)
    name_subcommands(cmds)

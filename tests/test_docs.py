"""The documentation stays true to the tree and the code.

- every relative link in README.md and docs/*.md resolves: the file exists and a `#anchor`
  names a heading of it (GitHub's slugs);
- docs/cli.md's command table has exactly the `osmo` subcommands the parser defines, and each
  row names every option of its command;
- docs/api.md names every REST route of the OpenAPI document as `METHOD /path`, and its route
  table matches the server's tornado routes both ways (WebSocket and proxy routes included);
- docs/osmo-cli.md's route table matches the routes of OSMO's API (osmo_api) both ways.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted(DOCS.glob("*.md"))]

_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$", re.M)


def _prose(text: str) -> str:
    """The text without fenced code blocks and inline code (links there are not links)."""
    return _CODE.sub("", _FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out: set[str] = set()
    for m in _HEADING.finditer(_FENCE.sub("", path.read_text())):
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    problems = []
    for target in _LINK.findall(_prose(page.read_text())):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...
            continue
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        if not dest.exists():
            problems.append(f"{page.relative_to(root)}: {target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            problems.append(f"{page.relative_to(root)}: {target}: no heading #{anchor}")
    return problems


def test_slugs_are_githubs() -> None:
    assert slug("What is not done yet") == "what-is-not-done-yet"
    assert slug("Interactive tasks and debugging on failure") == (
        "interactive-tasks-and-debugging-on-failure"
    )
    assert slug("`osmo workflow run`: the CLI, 30 s") == "osmo-workflow-run-the-cli-30-s"
    assert slug("REST & WebSocket API") == "rest--websocket-api"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    assert page.exists()
    assert broken_links(page) == []


def test_a_broken_link_is_found(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# Top\n\n## Next step\n")
    page = tmp_path / "b.md"
    page.write_text(
        "[ok](a.md#next-step) [ok](#here) `[code](nowhere.md)`\n\n# Here\n\n"
        "[gone](missing.md) [bad anchor](a.md#nope) [web](https://example.org/x.md)\n"
    )
    assert broken_links(page, root=tmp_path) == [
        "b.md: missing.md: no such file",
        "b.md: a.md#nope: no heading #nope",
    ]


# --- the CLI reference -------------------------------------------------------------------

# Options every command (or every dataset command) has, described once under the table.
COMMON_OPTIONS = {"--help", "--format", "--store", "--endpoint-url"}


def parser_commands() -> dict[str, set[str]]:
    """Every leaf `osmo` subcommand → its long options."""
    from osmo_core.cli import build_parser

    out: dict[str, set[str]] = {}

    def walk(p: argparse.ArgumentParser, words: tuple[str, ...]) -> None:
        subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            out[" ".join(words)] = {
                o for a in p._actions for o in a.option_strings if o.startswith("--")
            }
            return
        for s in subs:
            for name, sp in s.choices.items():
                walk(sp, (*words, name))

    walk(build_parser(), ())
    return out


def cli_table() -> dict[str, str]:
    """docs/cli.md's table: command words → the whole row."""
    rows: dict[str, str] = {}
    for line in (DOCS / "cli.md").read_text().splitlines():
        m = re.match(r"^\|\s*`osmo ([^`]*)`", line)
        if not m:
            continue
        words = []
        for w in m.group(1).split():
            if not re.fullmatch(r"[a-z][a-z-]*", w):
                break
            words.append(w)
        command = " ".join(words)
        assert command not in rows, f"docs/cli.md lists `osmo {command}` twice"
        rows[command] = line
    return rows


def test_cli_table_is_the_parser() -> None:
    commands, table = parser_commands(), cli_table()
    assert sorted(set(commands) - set(table)) == [], "commands missing from docs/cli.md"
    assert sorted(set(table) - set(commands)) == [], "docs/cli.md lists commands osmo lacks"
    for command, options in commands.items():
        missing = sorted(o for o in options - COMMON_OPTIONS if o not in table[command])
        assert missing == [], f"docs/cli.md: `osmo {command}` lacks {missing}"
    text = (DOCS / "cli.md").read_text()
    for option in COMMON_OPTIONS - {"--help"}:
        assert f"`{option}" in text, f"docs/cli.md does not explain {option}"


# --- the REST and WebSocket API --------------------------------------------------------

_ROW = re.compile(r"^\|\s*`(GET|POST|PUT|DELETE|PATCH|WS|ANY) (/[^`\s?]*)", re.M)


def api_rows() -> list[tuple[str, str]]:
    return _ROW.findall((DOCS / "api.md").read_text())


def server_routes() -> list[str]:
    from osmo_jupyter.app import OsmoApp
    from osmo_jupyter.server.osmo_api import ROUTES as OSMO_ROUTES

    app = OsmoApp()
    app.initialize_handlers()
    prefix = "/osmo/api/v1"
    osmo = {r[0] for r in OSMO_ROUTES}  # OSMO's API: docs/osmo-cli.md, checked below
    routes = [r[0] for r in app.handlers if r[0] not in osmo]
    # Outside the API: jupyter_server's /metrics, which the extension guards (operations.md)
    outside = {r for r in routes if not r.startswith(prefix)}
    assert routes and outside <= {"/metrics"}, outside
    assert "/metrics" in (DOCS / "operations.md").read_text()
    return [r[len(prefix) :] for r in routes if r not in outside]


def _sample(path: str) -> str:
    """A concrete URL path for a documented one: `{x}` → a value, `{port}` → a port."""
    return re.sub(r"\{port\}", "8888", re.sub(r"\{(?!port\})[^}]+\}", "x", path))


def test_api_md_has_every_openapi_route() -> None:
    from osmo_jupyter.server.routes import openapi

    documented = set(api_rows())
    missing = [
        f"{method.upper()} {path}"
        for path, ops in openapi("0").get("paths", {}).items()
        for method in ops
        if method in {"get", "post", "put", "delete", "patch"}
        and (method.upper(), path) not in documented
    ]
    assert missing == [], "routes of openapi() missing from docs/api.md"


def test_api_md_routes_are_the_servers() -> None:
    routes = [re.compile(r + "$") for r in server_routes()]
    rows = api_rows()
    unknown = [f"{m} {p}" for m, p in rows if not any(r.match(_sample(p)) for r in routes)]
    assert unknown == [], "docs/api.md documents routes the server does not have"
    undocumented = [r.pattern for r in routes if not any(r.match(_sample(p)) for _, p in rows)]
    assert undocumented == [], "server routes missing from docs/api.md"


def test_osmo_cli_md_routes_are_osmo_apis() -> None:
    from osmo_jupyter.server.osmo_api import ROUTES
    from osmo_jupyter.server.osmo_api.info import UnknownHandler

    rows = _ROW.findall((DOCS / "osmo-cli.md").read_text())
    routes = [(re.compile(r + "$"), h) for r, h in ROUTES]
    known = [r for r, h in routes if h is not UnknownHandler]  # the catch-all matches anything
    unknown = [
        f"{m} {p}" for m, p in rows if m != "ANY" and not any(r.match(_sample(p)) for r in known)
    ]
    assert unknown == [], "docs/osmo-cli.md documents routes the server does not have"
    undocumented = [r.pattern for r, _ in routes if not any(r.match(_sample(p)) for _, p in rows)]
    assert undocumented == [], "routes of OSMO's API missing from docs/osmo-cli.md"

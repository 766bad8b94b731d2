"""The hostile user's view: a real headless server (`jupyter osmo`'s identity provider: the
server's token is the owner and an admin, personal access tokens are OSMO users), as a team
would run it. Fixtures from tests/jupyter/conftest.py and tests/interactive/jupyter/conftest.py
(`api`, `jp_fetch`, `pat`, ...)."""

from __future__ import annotations

from tests.interactive.jupyter.conftest import *  # noqa: F403

"""A Hub-managed service: the Hub starts `jupyter osmo` itself (the `command` of
docs/jupyterhub_config.py), a user's Lab reaches it, and the Hub stops it at shutdown."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hub.conftest import Hub, call, running_hub, wait_until

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def managed_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    with running_hub(tmp_path_factory.mktemp("managed"), users=("alice",), managed=True) as h:
        yield h


def service_pids(hub: Hub) -> list[int]:
    """Processes whose command line is the service's (it alone names this data folder so)."""
    mark = f"--OsmoConfig.data_dir={hub.tmp / 'osmo'}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:  # not a process, or gone meanwhile
            continue
        if proc.name.isdigit() and mark in args:
            found.append(int(proc.name))
    return found


def test_the_hub_starts_its_service_and_stops_it(managed_hub: Hub) -> None:
    hub = managed_hub
    (pid,) = service_pids(hub)
    assert Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[1].endswith(b"jupyter-osmo")
    status, me = call(f"{hub.lab('alice')}/osmo/api/v1/me", hub.tokens["alice"])
    assert (status, me["name"], me["via"]) == (200, "alice", "hub"), me
    hub.stop()
    wait_until("the service gone with the Hub", lambda: not service_pids(hub), 30)

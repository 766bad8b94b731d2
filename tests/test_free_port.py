"""free_port hands out each port once per process, even before anything binds it."""

from __future__ import annotations

from tests.conftest import free_port


def test_free_port_never_repeats_a_port_it_handed_out() -> None:
    # 2,000 draws from ~22,000 ports: without the memory, a repeat is all but certain
    # (the birthday bound: 1 - e^-88); a test that takes two ports before binding either
    # once got the same one twice.
    ports = [free_port() for _ in range(2000)]
    assert len(set(ports)) == len(ports)

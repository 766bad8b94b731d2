"""The SSH backend's configuration is checked up front, each problem naming its field."""

from __future__ import annotations

import pytest

from osmo_core.config import OsmoConfig
from osmo_core.errors import ConfigError


def test_bad_ssh_backend_keys_name_their_field() -> None:
    with pytest.raises(ConfigError) as e:
        OsmoConfig(
            backends={
                "lab": {"kind": "ssh", "hosts": {"gpu1": {"archh": "x"}}, "knownhosts": "x"},
                "empty": {"kind": "ssh"},
            }
        )
    text = str(e.value)
    assert "OsmoConfig.backends.lab" in text and "knownhosts" in text
    assert "OsmoConfig.backends.lab.hosts.gpu1" in text and "archh" in text
    assert "OsmoConfig.backends.empty.hosts" in text


def test_platform_hosts_must_be_hosts_of_the_backend() -> None:
    config = OsmoConfig(
        backends={"lab": {"kind": "ssh", "hosts": ["gpu1", "jetson-1"]}},
        pools={"lab": {"backend": "lab", "platforms": {"orin": {"hosts": ["jetson-2"]}}}},
        default_pool="lab",
    )
    with pytest.raises(ConfigError, match=r"OsmoConfig\.pools\.lab\.platforms\.orin\.hosts"):
        config.pool_configs()

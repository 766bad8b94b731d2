"""The extension's lifecycle: configuration from the server's config, refusal on bad config."""

from __future__ import annotations

import pytest

from osmo_jupyter import _jupyter_server_extension_points
from osmo_jupyter.app import OsmoApp


def test_extension_point():
    assert _jupyter_server_extension_points() == [{"module": "osmo_jupyter.app", "app": OsmoApp}]


async def test_config_reaches_the_service(osmo, osmo_data_dir):
    assert osmo.service is not None
    assert osmo.service.config.data_dir == str(osmo_data_dir)
    assert osmo.service.config.parent is osmo
    assert (osmo_data_dir / "osmo.db").exists()


@pytest.mark.parametrize(
    ("osmo_config", "expected"),
    [
        ({"default_pool": "nope"}, "OsmoConfig.default_pool"),
        ({"backends": {"local": {"idle_timeout": 1}}}, "OsmoConfig.backends.local"),
        ({"max_retries": "many"}, "max_retries"),
    ],
)
def test_bad_config_refuses_to_start(
    jp_configurable_serverapp, jp_server_config, capfd, osmo_config, expected
):
    jp_server_config["OsmoConfig"].update(osmo_config)
    with pytest.raises(SystemExit) as e:
        jp_configurable_serverapp(config=jp_server_config)
    assert e.value.code == 1
    err = capfd.readouterr().err  # the extension logs to the server's stderr
    (line,) = [ln for ln in err.splitlines() if "cannot start" in ln]
    assert "[C " in line  # CRITICAL
    assert expected in err[err.index(line) :]

"""The lab extension's own checks and its packaging.

- the panel's wire types (src/generated/api-types.ts) are what `jlpm gen:api` makes of this
  checkout's OpenAPI document, so they cannot drift from the server;
- the TypeScript unit tests (vitest: API client, state, layout), run with jlpm in
  labextension/ (node_modules come from `pip install -e .`, whose build hook runs `jlpm
  install` and type-checks the sources with tsc; or they are installed here). eslint and
  prettier run in .ci/run next to ruff;
- a wheel built from this checkout, installed into a fresh virtual environment, shows the
  extension enabled in `jupyter labextension list` and the server extension enabled (what
  a user gets from `pip install`, without Node.js).
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXT = REPO / "labextension"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def jlpm(
    *args: str, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    if not (EXT / "node_modules").exists():
        subprocess.run(["jlpm", "install"], cwd=EXT, check=True, timeout=600)
    return subprocess.run(
        ["jlpm", *args], cwd=EXT, capture_output=True, text=True, timeout=timeout, env=env
    )


def test_generated_api_types_are_current(tmp_path: Path) -> None:
    committed = EXT / "src" / "generated" / "api-types.ts"
    fresh = tmp_path / "api-types.ts"
    # this interpreter documents this checkout (the script runs python from the repository root)
    done = jlpm("gen:api", str(fresh), env={**os.environ, "PYTHON": sys.executable})
    assert done.returncode == 0, done.stdout + done.stderr
    diff = difflib.unified_diff(
        committed.read_text().splitlines(), fresh.read_text().splitlines(), "committed", "fresh",
        lineterm="", n=1,
    )  # fmt: skip
    changes = "\n".join(list(diff)[:40])
    assert not changes, (
        "labextension/src/generated/api-types.ts is not what the server's OpenAPI document "
        f"says: run `jlpm gen:api` in labextension/ and commit it\n{changes}"
    )


def test_typescript_unit_tests_pass() -> None:
    done = jlpm("test")
    assert done.returncode == 0, done.stdout + done.stderr
    counts = re.search(r"Tests\s+(\d+) passed", ANSI.sub("", done.stdout))
    assert counts and int(counts.group(1)) >= 15, done.stdout


@pytest.mark.skipif(shutil.which("jlpm") is None, reason="jlpm (from jupyterlab) is not on PATH")
def test_wheel_installs_the_extension_enabled(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(wheels), str(REPO)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = wheels.glob("osmo_jupyter-*.whl")
    venv = tmp_path / "venv"
    # No pip of its own (seconds saved): this interpreter's pip installs into it.
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
        check=True, timeout=120,
    )  # fmt: skip
    python = venv / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
         str(wheel)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path),
           "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config")}  # fmt: skip
    labs = subprocess.run(
        [python, "-m", "jupyterlab.labextensions", "list"],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
    )  # fmt: skip
    listing = ANSI.sub("", labs.stdout + labs.stderr)
    # The venv's own section (another install of the project elsewhere must not count).
    section = listing.split(f"{venv}/share/jupyter/labextensions", 1)[-1].split("\n/", 1)[0]
    assert re.search(
        r"@osmo-jupyter/labextension v\S+ enabled\s+OK \(python, osmo-jupyter\)", section
    ), listing
    servers = subprocess.run(
        [python, "-m", "jupyter_server", "extension", "list"],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
    )  # fmt: skip
    out = ANSI.sub("", servers.stdout + servers.stderr)
    assert f"Config dir: {venv}/etc/jupyter\n    osmo_jupyter enabled" in out, out
    assert re.search(r"osmo_jupyter\s+OK", out), out

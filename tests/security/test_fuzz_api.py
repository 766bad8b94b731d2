"""schemathesis over the whole OpenAPI document as the hostile user would send it: with a plain
user's personal access token, and with no token at all. Whatever it generates, the server
answers no 5xx (and logs no traceback). tests/jupyter/test_openapi.py runs it as the owner and
checks the document itself; this runs it as everyone else."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from osmo_jupyter.server.routes import openapi
from tests.jupyter.test_headless import call
from tests.jupyter.test_openapi import CONFIG, HELLO, MAX_EXAMPLES, SEED, server


def fuzz(base: str, tmp_path: Path, header: str | None, wf_id: str) -> dict:
    """One schemathesis run (bounded by --max-examples and a timeout); its JSON report. Its
    files are its own: the user's and the anonymous run go at once."""
    who = "user" if header else "anonymous"
    doc = tmp_path / f"openapi-{who}.json"  # from the code: without a token the server hides it
    doc.write_text(json.dumps(openapi("fuzz")))
    config = tmp_path / f"schemathesis-{who}.toml"
    config.write_text(CONFIG.format(wf_id=wf_id))
    report = tmp_path / f"report-{who}.json"
    # fmt: off
    args = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "--no-color",
        "run", str(doc), "--url", base,
        # as a user: every check (as test_openapi.py runs them for the owner); anonymous:
        # everything is a 401/403, so only "no 5xx" has something to say
        "--checks", "all" if header else "not_a_server_error",
        "--max-examples", MAX_EXAMPLES, "--seed", SEED,
        "--request-timeout", "10",
        "--report", "json", "--report-json-path", str(report),
    ]
    # fmt: on
    if header:
        args += ["--header", header]
    t0 = time.monotonic()
    (cwd := tmp_path / who).mkdir()  # schemathesis's own files (.hypothesis/) apart too
    run = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=150)
    result = json.loads(report.read_text())
    cases = result["test_cases"]["generated"]
    print(f"schemathesis ({'user' if header else 'no token'}): {cases} cases in ", end="")
    print(f"{time.monotonic() - t0:.0f}s")
    assert run.returncode == 0 and not result["failures"], run.stdout[-6000:]
    assert not result["errors"], run.stdout[-6000:]
    assert cases > 100
    return result


@pytest.mark.timeout(400)
def test_no_5xx_for_a_user_token_or_none(osmo_env: dict[str, str], tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    with server(osmo_env, log) as base:
        status, made = call(f"{base}/tokens", {"name": "fuzz", "user": "mallory"})
        assert status == 201
        pat = made["token"]
        status, body = call(f"{base}/workflows", {"spec": HELLO}, token=pat)
        assert status == 201
        wf_id = body["id"]
        deadline = time.monotonic() + 20
        while call(f"{base}/workflows/{wf_id}", token=pat)[1]["status"] != "COMPLETED":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        # both at once: each is mostly schemathesis's own generation, a core each here
        with ThreadPoolExecutor(2) as pool:
            runs = [
                pool.submit(fuzz, base, tmp_path, header, wf_id)
                for header in (f"Authorization: Bearer {pat}", None)
            ]
            for run in runs:
                run.result()
    assert "Traceback" not in log.read_text()

"""Fixtures shared by every test: a real engine on a throw-away data directory."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from osmo_core.config import OsmoConfig
from osmo_core.service import Service

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"

ServiceFactory = Callable[..., Awaitable[Service]]

# --- in parallel (pytest-xdist: `-n 2 --dist loadgroup`, docs/development.md) ----------------

# The modules that drive Chromium take turns on one worker: their frame-time and visual checks
# measure a browser with a core to itself, not one beside another browser.
BROWSER_MODULES = (
    "tests/lab/",
    "tests/notebook/",
    "tests/hub/test_hub_browser.py",
    "tests/interactive/test_lab_task_terminal.py",
    "tests/security/test_task_app_origin.py",
)


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups and `-m` selects
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The browser modules' tests are marked `browser` (`-m browser`, `-m "not browser"`). A
    module's tests stay on one worker (its module-scoped servers start once); the browser
    modules share one."""
    xdist = config.pluginmanager.hasplugin("xdist")
    for item in items:
        module = item.nodeid.split("::", 1)[0]
        browser = module.startswith(BROWSER_MODULES)
        if browser:
            item.add_marker(pytest.mark.browser)
        if xdist:
            item.add_marker(pytest.mark.xdist_group("browser" if browser else module))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Once every test is done (under xdist, in the controller: a worker cannot know that the
    other is done), no test may have left a container or a host agent behind."""
    config = session.config
    if hasattr(config, "workerinput"):
        return
    left = []
    if config.pluginmanager.hasplugin("dsession") and shutil.which("podman"):
        left += [f"container {name}" for name in containers_left()]
    # under xdist the workers' temporary folders are inside the controller's
    left += agents_left(config._tmp_path_factory.getbasetemp())  # type: ignore[attr-defined]
    if left:
        writer = config.get_terminal_writer()
        writer.line()
        writer.line(f"left behind by the tests: {left}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Iterator[pytest.TestReport]:
    """A failed test that ran a Jupyter server in its own folder (tests/notebook/conftest.py
    `jupyter`) reports that server's last log lines: what it was doing (a request it never
    answered, a warning) is the evidence a flaky browser test needs, and the folder is gone by
    the time anyone looks (pytest keeps the last three runs)."""
    rep: pytest.TestReport = yield
    tmp = getattr(item, "funcargs", {}).get("tmp_path")
    if rep.failed and call.when == "call" and isinstance(tmp, Path):
        for log in sorted(tmp.glob("jupyter-*.log")):
            tail = log.read_text(errors="replace").splitlines()[-80:]
            rep.sections.append((f"{log.name}, last {len(tail)} lines", "\n".join(tail)))
    return rep


def make_config(data_dir: Path, **overrides: Any) -> OsmoConfig:
    """A config on `data_dir`; `local={...}` adds keys to the local backend (cpus, gpus...)."""
    local = {"kind": "local", "idle_timeout": 60, **overrides.pop("local", {})}
    store_url = overrides.pop("store_url", None) or f"sqlite:///{data_dir / 'osmo.db'}"
    return OsmoConfig(
        data_dir=str(data_dir), store_url=store_url, backends={"local": local}, **overrides
    )


@pytest.fixture
async def service_factory(tmp_path: Path) -> AsyncIterator[ServiceFactory]:
    """Start services on tmp_path; every agent they spawned is shut down at the end."""
    started: list[Service] = []

    async def factory(data_dir: Path | None = None, **overrides: Any) -> Service:
        svc = Service(make_config(data_dir or tmp_path / "osmo", **overrides))
        await svc.start()
        started.append(svc)
        return svc

    yield factory
    for svc in reversed(started):
        for backend in svc.backends.values():
            shutdown = getattr(backend, "shutdown_agent", None)
            if shutdown is not None:
                with contextlib.suppress(Exception):  # already gone
                    await shutdown(force=True)
        await svc.stop()


@pytest.fixture
async def service(service_factory: ServiceFactory) -> Service:
    return await service_factory()


@pytest.fixture
async def osmo_env(tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    """Environment for running the `osmo` CLI in a subprocess on a private data dir; the
    agent those runs leave behind (agents outlive engines by design) is stopped afterwards."""
    env = dict(os.environ)
    home = tmp_path / "osmo-cli"
    env["OSMO_HOME"] = str(home)
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    env.pop("OSMO_STORE_URL", None)
    yield env
    if (home / "agent.lock").exists():
        from osmo_core.backends.local import LocalBackend

        await LocalBackend("local", {"root": str(home)}).shutdown_agent(force=True)


@pytest.fixture(scope="session")
def hosts() -> Iterator[Any]:
    """Three SSH hosts (network namespaces with sshd, tests/ssh/sshhosts.py), made once per
    session for the SSH and the fault-injection suites; skipped, saying why, where they
    cannot be made."""
    from tests.ssh.sshhosts import make_hosts, unavailable

    why = unavailable()
    if why:
        pytest.skip(f"SSH hosts cannot be made here: {why}")
    made = make_hosts(Path(f"/tmp/osmo-ssh-{int(time.time() * 1000) % 10**8}"), 3)
    yield made
    made.close()


def osmo_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "osmo_core.cli", *args]


@dataclass
class PgDatabase:
    url: str  # SQLAlchemy URL of a fresh, empty database
    drop: Callable[[], None]  # drop it now, killing its connections (the store "goes away")


@pytest.fixture
def pg_database() -> Iterator[PgDatabase]:
    """A fresh PostgreSQL database on the server named by OSMO_TEST_POSTGRES_URL (.ci/run
    starts one); skipped, saying why, without it."""
    server = os.environ.get("OSMO_TEST_POSTGRES_URL")
    if not server:
        pytest.skip("OSMO_TEST_POSTGRES_URL is not set (a PostgreSQL server is needed)")
    from sqlalchemy import create_engine, text

    name = f"osmo_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")

    def drop() -> None:
        with admin.connect() as c:
            c.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))

    with admin.connect() as c:
        c.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield PgDatabase(server.rsplit("/", 1)[0] + "/" + name, drop)
    finally:
        drop()
        admin.dispose()


@pytest.fixture
def oidc_issuer() -> Iterator[Any]:
    from tests.oidc_issuer import LocalIssuer

    issuer = LocalIssuer()
    yield issuer
    issuer.close()


S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
BUCKET = "osmo-test"


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 (port 0), fake credentials in the environment, a bucket."""
    moto_server = pytest.importorskip("moto.server")
    s3fs = pytest.importorskip("s3fs")
    saved = {k: os.environ.get(k) for k in S3_ENV}
    os.environ.update(S3_ENV)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    s3fs.S3FileSystem(endpoint_url=endpoint, skip_instance_cache=True).mkdir(BUCKET)
    yield endpoint
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@functools.cache
def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


_GIVEN: set[int] = set()  # ports free_port handed out in this process


def free_port() -> int:
    """A TCP port nothing listens on now, on 127.0.0.1 (for servers the tests start), from
    below the kernel's ephemeral range: a port from port 0 is one the kernel also hands out as
    the source port of any outgoing connection, so a server started a moment later found it
    taken (a Hub's "Address already in use" under two workers). Random, so two workers rarely
    try the same one; tried with a bind; never one it handed out before in this process (two
    calls before either port is bound drew the same port: `port, other = free_port(),
    free_port()` once gave 30199 twice)."""
    high = _ephemeral_low()
    for _ in range(200):
        port = 10_000 + secrets.randbelow(high - 10_000)
        if port in _GIVEN:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            _GIVEN.add(port)
            return port
    raise RuntimeError(f"no free port in 10000-{high - 1}")


# --- containers (podman + runc, configured by .ci/run) -----------------------------------------

TEST_IMAGE = "localhost/osmo-test:busybox"
PYTHON_IMAGE = "localhost/osmo-test:python"
UBUNTU = "docker.io/library/ubuntu:24.04"  # OSMO's cookbook image, the test image tagged so


def _build_test_image() -> None:
    """A static busybox as an image's whole file system (no registry, seconds): `sh` and the
    usual commands, no Python."""
    busybox = Path("/bin/busybox")
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True)
    with tempfile.TemporaryDirectory() as tmp:
        tar = Path(tmp) / "rootfs.tar"
        with tarfile.open(tar, "w") as t:
            for d in ("bin", "tmp", "etc", "root", "usr", "usr/bin"):
                info = tarfile.TarInfo(d)
                info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
                t.addfile(info)
            t.add(busybox, "bin/busybox")
            for name in applets.stdout.split():
                if name != "busybox":
                    link = tarfile.TarInfo(f"bin/{name}")
                    link.type, link.linkname = tarfile.SYMTYPE, "busybox"
                    t.addfile(link)
        subprocess.run(
            ["podman", "import", "-q", "-c", "ENV PATH=/usr/bin:/bin", str(tar), TEST_IMAGE],
            check=True,
            capture_output=True,
        )


def _exists(image: str) -> bool:
    return subprocess.run(["podman", "image", "exists", image]).returncode == 0


@functools.cache
def _container_setup() -> str:
    """ "" when podman runs the test image here (built once, kept in podman's store across runs),
    else why not. OSMO's `ubuntu:24.04` is the Debian image where .ci/run built it (bash and
    coreutils, as OSMO's tutorials expect), else the test image."""
    if not shutil.which("podman") or not Path("/bin/busybox").exists():
        return "podman or busybox-static is not installed (.ci/run installs both)"
    # one process builds it: xdist's workers (or two checkouts) start at once on a new machine
    with open(Path(tempfile.gettempdir()) / "osmo-test-image.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _exists(TEST_IMAGE):
            _build_test_image()
    ubuntu = PYTHON_IMAGE if _exists(PYTHON_IMAGE) else TEST_IMAGE
    subprocess.run(["podman", "tag", ubuntu, UBUNTU], check=True, capture_output=True)
    ran = subprocess.run(
        ["podman", "run", "--rm", TEST_IMAGE, "true"], capture_output=True, text=True, timeout=60
    )
    return "" if ran.returncode == 0 else f"podman cannot run a container here: {ran.stderr[-300:]}"


@pytest.fixture(scope="session")
def container_image() -> Iterator[str]:
    """The test image; skips where podman cannot run it. At the end, no container of a test
    may be left (label osmo.root, agent/containers.py)."""
    if why := _container_setup():
        pytest.skip(why)
    yield TEST_IMAGE
    if not os.environ.get("PYTEST_XDIST_WORKER"):  # else the controller checks, once all end
        left = containers_left()
        assert not left, f"containers left behind: {left}"


def containers_left() -> list[str]:
    """Containers of tests (label osmo.root, agent/containers.py) still there: removed, named."""
    left = subprocess.run(
        ["podman", "ps", "-a", "--filter", "label=osmo.root", "--format", "{{.Names}}"],
        capture_output=True,
        text=True,
    ).stdout.split()
    if left:
        subprocess.run(["podman", "rm", "-f", *left], capture_output=True)
    return left


SHORT_IDLE = 60.0  # seconds: an agent with at most this idle timeout ends alone, soon


def agents_left(under: Path, grace: float = 5.0) -> list[str]:
    """Host agents (`python -m osmo_core.agent`) of data directories under `under` that would
    idle for more than SHORT_IDLE, still running after `grace` seconds (one whose test asked it
    to stop may still be on its way out): asked to stop (SIGTERM: their tasks first), named.
    An agent outlives its engine by design, so a test stops the ones it starts, or gives them
    a short idle timeout; a forgotten one idles ten minutes beside the tests that follow."""

    def agent(proc: Path) -> Path | None:
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:  # gone
            return None
        if b"osmo_core.agent" not in argv or b"--root" not in argv[:-1]:
            return None
        idle = 600.0  # the agent's default
        if b"--idle-timeout" in argv[:-1]:
            idle = float(argv[argv.index(b"--idle-timeout") + 1])
        root = Path(os.fsdecode(argv[argv.index(b"--root") + 1]))
        return root if idle > SHORT_IDLE and root.is_relative_to(under) else None

    found = {p: root for p in Path("/proc").iterdir() if p.name.isdigit() and (root := agent(p))}
    deadline = time.monotonic() + grace
    while found and time.monotonic() < deadline:
        time.sleep(0.1)
        found = {p: root for p, root in found.items() if agent(p)}
    for proc in found:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(proc.name), signal.SIGTERM)
    return [f"agent {proc.name} of {root}" for proc, root in found.items()]


@pytest.fixture(scope="session")
def python_image(container_image: str) -> str:
    """Debian with Python and ipykernel, built by .ci/run with mmdebstrap (it needs Debian's
    package mirror, so never here); skips where it is not in podman's store."""
    if not _exists(PYTHON_IMAGE):
        pytest.skip(f"{PYTHON_IMAGE} is not built (.ci/run builds it with mmdebstrap)")
    return PYTHON_IMAGE


@pytest.fixture(scope="session", autouse=True)
def _ubuntu_tagged_where_podman_runs() -> None:
    """Examples written for OSMO name `ubuntu:24.04`: where podman runs, every test finds it
    tagged (as docs/operations.md tells offline users), whichever test comes first."""
    _container_setup()


@pytest.fixture(scope="session")
def offline_ubuntu() -> bool:
    """Whether tasks with OSMO's `ubuntu:24.04` run in a container here (the test image tagged
    so: the trick docs/operations.md gives offline users), else on the host."""
    return not _container_setup()

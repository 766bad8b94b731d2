"""Start-up benchmark: what a user waits for before any command or magic does its work.

    python benchmarks/startup.py            # about 30 s; exit 1 if a heavy import crept back

Each command runs RUNS times as a fresh process, interleaved with the floor (`python -c pass`,
or a bare IPython shell for the magic), so both see the same machine; medians are printed with
the target and the time above the floor. Then each command runs once under `-X importtime`:
a module of FORBIDDEN on its path (the store's SQLAlchemy, asyncssh, networkx, the Jupyter
server...) fails the run, naming the module and the import that pulled it in.

version    `osmo --version`                                        target <= 0.15 s
validate   `osmo workflow validate examples/hello.yaml`            target <= 0.30 s
list       `osmo workflow list` against a live `jupyter osmo`      target <= 0.30 s
load_ext   `%load_ext osmo_jupyter` in an IPython shell, above it  target <= 0.30 s
pod_agent  the in-pod agent's start (`python -m osmo_core.agent.pod`, as the Kubernetes
           backend runs it, with --help: all of its imports, then exit), above `python -c pass`
                                                                   target <= 0.20 s

Every command runs with bytecode for osmo's own modules, as an installed wheel has it (pip
compiles at install): PYTHONDONTWRITEBYTECODE is dropped and the bytecode goes to a
PYTHONPYCACHEPREFIX of this run, written by one untimed run of each command first. (Where the
environment sets PYTHONDONTWRITEBYTECODE, as on this project's machines, a checkout's modules
are compiled from source at every start: ~0.13 s of a validate.)

Then the same pod agent start without bytecode (an empty PYTHONPYCACHEPREFIX, nothing written):
what every pod pays when its agent image was installed without compiling it (each pod starts
from a fresh copy of the image's tree, so nothing compiled in one pod helps the next).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUNS = int(os.environ.get("OSMO_BENCH_RUNS", "7"))
SHELL = "from IPython.core.interactiveshell import InteractiveShell as S; s = S.instance()"
LOAD_EXT = SHELL + "; s.run_line_magic('load_ext', 'osmo_jupyter')"

# Top-level packages no start-up path may import: each costs 50-300 ms and belongs to the
# engine, the SSH backend or the server, which these commands do not run.
FORBIDDEN = ("sqlalchemy", "asyncssh", "networkx", "jupyter_server", "kubernetes", "jwt", "zmq")
# A command talks to no server and runs no kernel: tornado and jupyter_client are heavy too.
FORBIDDEN_CLI = (*FORBIDDEN, "tornado", "jupyter_client", "IPython")
# The spec's models and templates (pydantic, Jinja: ~0.2 s): the server's business for a remote
# command, and a notebook's only once it loads a spec.
SPEC_MODELS = ("pydantic", "jinja2")
FORBIDDEN_REMOTE = (*FORBIDDEN_CLI, *SPEC_MODELS)
FORBIDDEN_LOAD_EXT = (*FORBIDDEN, *SPEC_MODELS)
# A spec without Jinja syntax (hello.yaml; the run-time tokens are not) renders without Jinja.
FORBIDDEN_VALIDATE = (*FORBIDDEN_CLI, "jinja2")
# The in-pod agent dials home (asyncssh) and supervises one task: nothing of the engine, the
# server, the spec or the dataset store (imported when a task's data needs it).
FORBIDDEN_POD = (
    *(p for p in FORBIDDEN_CLI if p != "asyncssh"),
    *("fsspec", "pydantic", "yaml", "osmo_core.data.datasets", "osmo_core.engine"),
    *("osmo_core.store", "osmo_core.spec", "osmo_core.service"),
)
POD_AGENT = [sys.executable, "-m", "osmo_core.agent.pod", "--help"]


def osmo(*args: str) -> list[str]:
    script = Path(sys.executable).parent / "osmo"  # the console script a user runs
    return (
        [str(script), *args] if script.exists() else [sys.executable, "-m", "osmo_core.cli", *args]
    )


def commands() -> dict[str, tuple[list[str], list[str], tuple[str, ...], float]]:
    """name -> (argv, the floor's argv, forbidden packages, target in seconds above nothing)."""
    floor = [sys.executable, "-c", "pass"]
    hello = str(REPO / "examples" / "hello.yaml")
    return {
        "version": (osmo("--version"), floor, FORBIDDEN_CLI, 0.15),
        "validate": (osmo("workflow", "validate", hello), floor, FORBIDDEN_VALIDATE, 0.30),
        "list": (osmo("workflow", "list"), floor, FORBIDDEN_REMOTE, 0.30),
        "load_ext": (
            [sys.executable, "-c", LOAD_EXT],
            [sys.executable, "-c", SHELL],
            FORBIDDEN_LOAD_EXT,
            0.30,
        ),
        "pod_agent": (POD_AGENT, floor, FORBIDDEN_POD, 0.20),
    }


def imported(argv: list[str], env: dict[str, str]) -> dict[str, str]:
    """Top-level package, and each module, -> the first module outside it that imported it
    (from `-X importtime`)."""
    if argv[0] != sys.executable:
        argv = [sys.executable, "-m", "osmo_core.cli", *argv[1:]]
    out = subprocess.run(
        [sys.executable, "-X", "importtime", *argv[1:]],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    stack: list[tuple[int, str]] = []
    found: dict[str, str] = {}
    for line in reversed(out.stderr.splitlines()):  # importtime prints children first
        if not line.startswith("import time:") or "|" not in line:
            continue
        name = line.rsplit("|", 1)[1]
        depth = (len(name) - len(name.lstrip())) // 2
        name = name.strip()
        if name == "imported package":
            continue
        del stack[depth:]
        for key in (name.split(".")[0], name):
            if key not in found:
                found[key] = next((n for _, n in reversed(stack) if not n.startswith(key)), name)
        stack.append((depth, name))
    return found


def creeping(argv: list[str], forbidden: tuple[str, ...], env: dict[str, str]) -> list[str]:
    """One line per forbidden package (or module) the command imports, naming who pulled it
    in."""
    found = imported(argv, env)
    return [f"{pkg} (imported by {found[pkg]})" for pkg in forbidden if pkg in found]


def timed(argv: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    subprocess.run(argv, env=env, capture_output=True, timeout=60, check=True)
    return time.perf_counter() - t


async def with_server(root: Path, env: dict[str, str]) -> int:
    sys.path.insert(0, str(REPO / "benchmarks"))
    from api import TOKEN, Server

    async with Server(root / "server") as server:
        subprocess.run(
            osmo("login", server.url, "--token", TOKEN), env=env, check=True, capture_output=True
        )
        return report(env)


def report(env: dict[str, str]) -> int:
    failures = 0
    print(f"{'command':10} {'median':>8} {'floor':>8} {'above':>8} {'target':>8}  heavy imports")
    for name, (argv, floor, forbidden, target) in commands().items():
        timed(argv, env)  # writes its bytecode
        ours, base = [], []
        for _ in range(RUNS):
            ours.append(timed(argv, env))
            base.append(timed(floor, env))
        m, f = statistics.median(ours), statistics.median(base)
        above = m - f if name in ("load_ext", "pod_agent") else m
        creep = creeping(argv, forbidden, env)
        failures += bool(creep)
        verdict = "ok" if above <= target else "MISSED"
        print(
            f"{name:10} {m:8.3f} {f:8.3f} {m - f:8.3f} {target:8.2f}  {verdict}; "
            + ("; ".join(creep) if creep else "none")
        )
    with tempfile.TemporaryDirectory(prefix="osmo-nopyc-") as empty:
        cold_env = env | {"PYTHONPYCACHEPREFIX": empty, "PYTHONDONTWRITEBYTECODE": "1"}
        warm, cold = [], []
        for _ in range(RUNS):
            warm.append(timed(POD_AGENT, env))
            cold.append(timed(POD_AGENT, cold_env))
    w, c = statistics.median(warm), statistics.median(cold)
    print(f"pod agent without bytecode {c:.3f} s, with it {w:.3f} s: {c / w:.1f}x")
    if failures:
        print(f"FAIL: {failures} command(s) import what their start-up path must not")
    return 1 if failures else 0


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="osmo-startup-") as tmp:
        root = Path(tmp)
        env = dict(os.environ)
        env.update(
            OSMO_HOME=str(root / "home"),
            XDG_CONFIG_HOME=str(root / "config"),
            PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
            PYTHONPYCACHEPREFIX=str(root / "pycache"),
        )
        env.pop("OSMO_STORE_URL", None)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        return asyncio.run(with_server(root, env))


if __name__ == "__main__":
    sys.exit(main())

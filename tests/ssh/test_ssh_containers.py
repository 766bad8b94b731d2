"""A task with an `image` on an SSH host runs in the host user's own (rootless) podman: the
test image is loaded into that user's store, and the same agent code as on this machine runs
it there, with OSMO's paths, and removes its container at the end.

The test hosts are `ip netns exec` namespaces, whose fresh /sys has no cgroups, so runc cannot
create a container there ("no cgroup mount found in mountinfo"); the fixture mounts the cgroup
v1 controllers into the mount namespace of the host's sshd (every session's) first. Rootless
podman on cgroup v1 ignores resource limits, and says so in the task's log."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from sshhosts import Host, Hosts

WAIT = 90  # seconds: a rootless container's first start sets up the user's podman


def as_user(h: Host, *argv: str) -> subprocess.CompletedProcess[str]:
    """podman as the host's user (its own store under its home), in its sshd's namespaces:
    rootless podman's pause process keeps the mounts of the first call for every later one."""
    assert h.sshd is not None
    ns = [f"--{k}=/proc/{h.sshd.pid}/ns/{f}" for k, f in (("mount", "mnt"), ("net", "net"))]
    return subprocess.run(
        ["nsenter", *ns, "su", h.user, "-c", " ".join(argv)],
        env={"HOME": str(h.home), "PATH": "/usr/bin:/bin"},
        cwd=h.home,
        capture_output=True,
        text=True,
        timeout=120,
    )


CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids")


def mount_cgroups(sshd: int) -> None:
    """The machine's cgroup v1 hierarchies in the mount namespace of process `sshd`."""
    script = "mountpoint -q /sys/fs/cgroup/memory && exit 0; "
    script += "mount -t tmpfs -o mode=755 cgroup /sys/fs/cgroup; "
    for c in (*CONTROLLERS, "none,name=systemd"):
        d = c.removeprefix("none,name=")
        script += f"mkdir -p /sys/fs/cgroup/{d}; mount -t cgroup -o {c} cgroup /sys/fs/cgroup/{d}; "
    subprocess.run(["nsenter", f"--mount=/proc/{sshd}/ns/mnt", "sh", "-c", script], check=True)


@pytest.fixture
def host_image(hosts: Hosts, container_image: str) -> Iterator[tuple[Host, str]]:
    """h1 with the test image in its user's podman store; at the end no container of that
    user is left (its podman's pause process goes with the hosts: sshhosts.py)."""
    h = hosts.hosts[0]
    assert h.sshd is not None
    mount_cgroups(h.sshd.pid)
    # What an earlier test left running as the host's user (its agent, rootless podman's pause
    # process, whose namespaces podman joins) lives in a mount namespace without these cgroups
    # (CI: runc "no cgroup mount found in mountinfo"): they go, and start again here.
    left = [p for p in psutil.process_iter(["username"]) if p.info["username"] == h.user]
    for p in left:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(left, timeout=5)
    tar = h.home / "osmo-test-image.tar"
    subprocess.run(["podman", "save", "-q", "-o", str(tar), container_image], check=True)
    tar.chmod(0o644)
    loaded = as_user(h, "podman", "load", "-q", "-i", str(tar))
    tar.unlink()
    if loaded.returncode != 0:
        pytest.skip(f"rootless podman does not work for the host's user: {loaded.stderr[-300:]}")
    yield h, container_image
    left = as_user(h, "podman", "ps", "-a", "--format", "'{{.Names}}'").stdout.split()
    if left:
        as_user(h, "podman", "rm", "-f", *left)
    assert not left, f"containers left on {h.alias}: {left}"


async def test_an_image_task_runs_in_the_hosts_podman(
    host_image: tuple[Host, str], ssh_service
) -> None:  # host_image first: its check runs once the agents are gone
    h, image = host_image
    svc = await ssh_service(platforms={"one": {"hosts": [h.alias]}})
    spec = {
        "workflow": {
            "name": "boxed",
            "pool": "lab",
            "tasks": [
                {
                    "name": "a",
                    "image": image,
                    "command": ["sh", "-c", "pwd; echo made > {{output}}/x; echo $OSMO_OUTPUT"],
                },
                {
                    "name": "b",
                    "image": image,
                    "command": ["sh", "-c", "cat {{input:0}}/x; test -e /bin/busybox && id -u"],
                    "inputs": [{"task": "a"}],
                },
            ],
        }
    }
    wf = await svc.submit(spec)
    status = (await asyncio.wait_for(svc.wait(wf), WAIT)).value
    logs = {t: [ln.text for ln in await svc.logs(wf, t)] for t in "ab"}
    assert status == "COMPLETED", (svc.task(wf, "a")["message"], logs)
    out = {t: [ln.text for ln in await svc.logs(wf, t) if ln.stream == "stdout"] for t in "ab"}
    assert out == {"a": ["/osmo/run", "/osmo/data/output"], "b": ["made", "0"]}
    system = [ln.text for ln in await svc.logs(wf, "a") if ln.stream != "stdout"]
    assert not any(line.startswith(f"image {image} ignored") for line in system)
    assert "Resource limits are not supported and ignored on cgroups V1 rootless systems" in system
    workdir = Path(svc.task(wf, "b")["workdir"])
    assert workdir.is_relative_to(h.home)  # on the host

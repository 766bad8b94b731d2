"""A kubernetes backend's config: the keys it takes, their checks, and `agent_dial`.

Config: `kubeconfig` + `context`, or `host` (a plain API URL, used by the tests), or
`in_cluster: true`; `namespace`; optional `node_selector`, `tolerations`, `pod_template`,
`default_image` (pool platforms may add their own `node_selector`, `tolerations`,
`pod_template`, merged after these); `start_timeout` (s a pod may stay unscheduled or pulling,
default 600); `keep_on_failure` (leave failed pods for debugging); `orphan_grace` (s after start
before unclaimed pods of this backend are removed, default 60); `node_refresh` (s between
listings of the nodes, default 60: the scheduler follows the cluster); `gang_scheduler`
("volcano" | "kai": PodGroup objects for barrier groups; never required). The in-pod agent's
keys (`agent_image`, ...) are described in agent.py.
"""

from __future__ import annotations

import re
from typing import Any

from ...errors import Problem

BACKEND_KEYS = {
    *("kind", "root", "namespace", "kubeconfig", "context", "host", "in_cluster"),
    *("node_selector", "tolerations", "pod_template", "default_image"),
    *("start_timeout", "keep_on_failure", "orphan_grace", "node_refresh", "watch_seconds"),
    *("gang_scheduler", "scheduler_name"),
    *("agent_image", "agent_dir", "agent_init_command", "agent_command", "agent_linger"),
    "agent_dial",
}
_DIAL = re.compile(r"(\[[0-9a-fA-F:]+\]|[^\s:\[\]]+):(\d{1,5})")  # HOST:PORT, [IPv6]:PORT
_SECONDS = ("start_timeout", "orphan_grace", "node_refresh", "watch_seconds", "agent_linger")


def check_config(name: str, spec: dict[str, Any]) -> list[Problem]:
    """Every problem of a kubernetes backend's config, naming the field
    (`KubernetesBackend.check_config`: a typo fails at start, not at the first launch)."""
    where = f"OsmoConfig.backends.{name}"
    problems = Problem.unknown_keys(spec, BACKEND_KEYS, where)
    if sum(bool(spec.get(k)) for k in ("kubeconfig", "host", "in_cluster")) > 1:
        problems.append(
            Problem(
                "give one of kubeconfig, host, in_cluster",
                field=where,
                hint="kubeconfig (+ context) for a cluster from outside, in_cluster inside one",
            )
        )
    for key in _SECONDS:
        value = spec.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0
        ):
            problems.append(
                Problem(f"expected seconds (a number >= 0), got {value!r}", field=f"{where}.{key}")
            )
    if spec.get("gang_scheduler") not in (None, "volcano", "kai"):
        problems.append(
            Problem(
                f"unknown gang scheduler {spec['gang_scheduler']!r}",
                field=f"{where}.gang_scheduler",
                hint="volcano, kai, or leave it out (the default scheduler)",
            )
        )
    dial = spec.get("agent_dial")
    if dial is not None and not re.fullmatch(
        r"[^\s:]+:\d{1,5}|\[[0-9a-fA-F:]+\]:\d{1,5}", str(dial)
    ):
        problems.append(
            Problem(
                f"expected HOST:PORT, got {dial!r}",
                field=f"{where}.agent_dial",
                hint="the address this control plane's pods reach it at, e.g. osmo.internal:7022",
            )
        )
    for key in ("agent_init_command", "agent_command"):
        value = spec.get(key)
        if value is not None and not (
            isinstance(value, list) and value and all(isinstance(x, str) for x in value)
        ):
            problems.append(
                Problem(
                    f"expected a non-empty list of strings, got {value!r}", field=f"{where}.{key}"
                )
            )
    return problems


def agent_dial(spec: dict[str, Any]) -> tuple[str, int] | None:
    """(host, port) of `agent_dial`, the address pods reach the control plane at; None: unset."""
    dial = _DIAL.fullmatch(str(spec.get("agent_dial") or ""))
    return (dial.group(1).strip("[]"), int(dial.group(2))) if dial else None

"""What stays of a Kubernetes attempt in the control plane's data directory once its pod is
gone (ROOT/k8s-logs/<backend>/): its pod's log, copied when it ends, and how it ended, so
`read_log` and `status` still answer after the pod is deleted and after a restart."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from ...wire import AttemptState, Exited, LaunchInfo, Lost, StartFailed
from .cluster import write_atomic
from .pods import pod_name


class Records:
    def __init__(self, log_dir: Path):
        self.log_dir = log_dir

    def pod_log(self, key: str) -> Path:
        """The copy of the attempt's pod log (its agent's log, if any: PodAgents.log_path)."""
        return self.log_dir / f"{pod_name(key)}.log"

    def info(self, key: str, known: bool = False) -> LaunchInfo:
        name = pod_name(key)
        return LaunchInfo(
            key,
            workdir=f"pod:{name}",
            output=f"pod:{name}/output",
            log=str(self.pod_log(key)),
            already_known=known,
        )

    async def write_end(self, key: str, ev: Exited | StartFailed | Lost) -> None:
        end = {"exit_code": ev.exit_code} if isinstance(ev, Exited) else {"message": ev.message}
        await asyncio.to_thread(write_atomic, self._end_file(key), json.dumps(end))

    def ended_state(self, key: str) -> AttemptState:
        """An attempt whose pod is gone: how it ended, from the record kept at the end."""
        try:
            end = json.loads(self._end_file(key).read_text())
        except (OSError, ValueError):
            return AttemptState(key, "unknown")
        if "exit_code" in end:
            return AttemptState(key, "exited", exit_code=end["exit_code"], info=self.info(key))
        return AttemptState(key, "lost", message=end.get("message", "pod deleted"))

    def _end_file(self, key: str) -> Path:
        return self.log_dir / f"{pod_name(key)}.end.json"

"""Static views of workflows (HTML, Markdown, text) for front ends without widgets: nbconvert,
GitHub's renderer, a terminal. They show the same facts as the live monitor: each task's state
(coloured), attempt, exit code, duration, and what it waits for."""

from __future__ import annotations

import html
import json
import time
from typing import Any

from .records import latest_attempts

# One colour per state family, shared with the widget's JavaScript (passed in its model).
COLOURS = {
    "COMPLETED": "#2e7d32",
    "RUNNING": "#1565c0",
    "INITIALIZING": "#1565c0",
    "PROCESSING": "#6a1b9a",
    "SCHEDULING": "#6a1b9a",
    "PENDING": "#6a1b9a",
    "WAITING": "#757575",
    "RESCHEDULED": "#ef6c00",
    "FAILED_CANCELED": "#8d6e63",
}
FAILED_COLOUR = "#c62828"
UNKNOWN_COLOUR = "#9e9e9e"


def colour(status: str) -> str:
    if status in COLOURS:
        return COLOURS[status]
    return FAILED_COLOUR if status.startswith("FAILED") else UNKNOWN_COLOUR


def upstream_of(spec_json: str | dict[str, Any] | None) -> dict[str, list[str]]:
    """task → the tasks it takes inputs from (from the stored spec JSON)."""
    spec = json.loads(spec_json) if isinstance(spec_json, str) else spec_json or {}
    tasks = list(spec.get("tasks") or [])
    tasks += [t for g in spec.get("groups") or [] for t in g.get("tasks") or []]
    return {
        t["name"]: [i["task"] for i in t.get("inputs") or [] if isinstance(i, dict) and "task" in i]
        for t in tasks
    }


def duration(row: dict[str, Any], now: float | None = None) -> float | None:
    if not row.get("start_time"):
        return None
    return float((row.get("end_time") or now or time.time()) - row["start_time"])


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s" if m < 60 else f"{m // 60}h{m % 60:02d}m"


def task_rows(wf: dict[str, Any], upstream: dict[str, list[str]] | None = None) -> list[dict]:
    """One JSON-ready row per task (its latest attempt): what every view shows."""
    upstream = upstream or {}
    return [
        {
            "name": t["name"],
            "status": t["status"],
            "retry_id": t["retry_id"],
            "exit_code": t.get("exit_code"),
            "duration": fmt_duration(duration(t)),
            "after": upstream.get(t["name"], []),
            "message": t.get("message") or "",
        }
        for t in latest_attempts(wf.get("tasks") or [])
    ]


def workflow_html(wf: dict[str, Any], upstream: dict[str, list[str]] | None = None) -> str:
    e = html.escape
    rows = "".join(
        "<tr>"
        f"<td><b>{e(r['name'])}</b></td>"
        f'<td><span style="color:#fff;background:{colour(r["status"])};padding:1px 6px;'
        f'border-radius:3px">{e(r["status"])}</span></td>'
        f"<td>{r['retry_id'] + 1}</td>"
        f"<td>{'' if r['exit_code'] is None else r['exit_code']}</td>"
        f"<td>{e(r['duration'])}</td>"
        f"<td>{e(', '.join(r['after']))}</td>"
        "</tr>"
        for r in task_rows(wf, upstream)
    )
    status = wf["status"]
    return (
        f'<div class="osmo-workflow"><b>{e(wf["id"])}</b> '
        f'<span style="color:{colour(status)}">{e(status)}</span> '
        f"<small>pool {e(str(wf.get('pool', '')))}</small>"
        "<table><thead><tr><th>task</th><th>status</th><th>attempt</th><th>exit</th>"
        f"<th>duration</th><th>after</th></tr></thead><tbody>{rows}</tbody></table></div>"
    )


def workflow_markdown(wf: dict[str, Any], upstream: dict[str, list[str]] | None = None) -> str:
    lines = [
        f"**{wf['id']}** {wf['status']}",
        "",
        "| task | status | attempt | exit | duration | after |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in task_rows(wf, upstream):
        exit_code = "" if r["exit_code"] is None else r["exit_code"]
        lines.append(
            f"| {r['name']} | {r['status']} | {r['retry_id'] + 1} | {exit_code} | "
            f"{r['duration']} | {', '.join(r['after'])} |"
        )
    return "\n".join(lines)


def workflow_text(wf: dict[str, Any]) -> str:
    head = f"{wf['id']}: {wf['status']}"
    body = [
        f"  {r['name']:<16} {r['status']:<20} attempt {r['retry_id'] + 1}  "
        f"exit {'-' if r['exit_code'] is None else r['exit_code']:<4} {r['duration']}"
        for r in task_rows(wf)
    ]
    return "\n".join([head, *body])


def workflows_html(rows: list[dict[str, Any]]) -> str:
    e = html.escape
    body = "".join(
        f"<tr><td>{e(r['id'])}</td>"
        f'<td style="color:{colour(r["status"])}">{e(r["status"])}</td>'
        f"<td>{e(str(r.get('pool', '')))}</td><td>{e(str(r.get('user', '')))}</td>"
        f"<td>{e(_when(r.get('submit_time')))}</td></tr>"
        for r in rows
    )
    return (
        "<table><thead><tr><th>id</th><th>status</th><th>pool</th><th>user</th>"
        f"<th>submitted</th></tr></thead><tbody>{body}</tbody></table>"
    )


def workflows_text(rows: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"{r['id']:<24} {r['status']:<20} {r.get('pool', '')!s:<10} {_when(r.get('submit_time'))}"
        for r in rows
    )


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else ""

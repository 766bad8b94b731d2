"""The widgets' model state follows real events from a real server (no browser needed: the
front end only draws these traits)."""

from __future__ import annotations

import time
from pathlib import Path

from osmo_jupyter import Client
from osmo_jupyter.widgets import WorkflowList, WorkflowMonitor

SPECS = Path(__file__).parent / "specs"


def wait_for(predicate, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_monitor_follows_a_running_workflow(server_env, wf_name):
    # `make` takes a second, so the run cannot be over before the monitor is watching (the
    # monitor rightly ignores replayed history of a finished workflow)
    spec = (SPECS / "chain.yaml").read_text().replace("echo made", "sleep 1; echo made")
    assert "sleep 1" in spec
    wf = Client().submit(spec, name=wf_name)
    monitor = WorkflowMonitor(wf)
    snapshots: list[dict[str, str]] = []
    monitor.observe(
        lambda ch: snapshots.append({t["name"]: t["status"] for t in ch["new"]}), "tasks"
    )
    try:
        assert [t["name"] for t in monitor.tasks] == ["make", "use"]
        assert [t["after"] for t in monitor.tasks] == [[], ["make"]]
        assert [t["level"] for t in monitor.tasks] == [0, 1]
        wait_for(lambda: monitor.status == "COMPLETED")
        wait_for(lambda: all(t["status"] == "COMPLETED" for t in monitor.tasks))
        # the rows went through the run: `use` waited, ran, completed, in that order
        use = [s["use"] for s in snapshots]
        assert use.index("RUNNING") < use.index("COMPLETED")
        make, use_row = monitor.tasks
        assert make["exit_code"] == 0 and make["end_time"] >= make["start_time"] > 0
        assert use_row["last_lines"] == ["hello from make"]
        monitor._handle_custom_msg({"action": "select", "task": "use"}, [])
        assert monitor.selected == "use" and monitor.log_lines == ["hello from make"]
    finally:
        monitor.close()


def test_monitor_log_pane_follows_the_selected_task_and_cancel_button(server_env, wf_name):
    wf = Client().submit(SPECS / "slow.yaml", set_values={"lines": 300}, name=wf_name)
    monitor = WorkflowMonitor(wf)
    try:
        assert monitor.selected == "ticker"
        wait_for(lambda: len(monitor.log_lines) >= 3, 30)  # live lines, as they are printed
        assert monitor.log_lines[:3] == ["tick 1", "tick 2", "tick 3"]
        assert monitor.tasks[0]["status"] == "RUNNING"
        monitor._handle_custom_msg({"action": "cancel"}, [])  # the Cancel button
        wait_for(lambda: monitor.status == "FAILED_CANCELED", 30)
        wait_for(lambda: monitor.tasks[0]["status"] == "FAILED_CANCELED", 30)
    finally:
        monitor.close()


def test_the_log_pane_has_no_gap_between_its_read_and_its_live_lines(server_env, wf_name):
    """Live log lines are not replayed: those written after the pane read the log and before
    its subscription began are read from the log when the next live line shows the gap."""
    wf = Client().submit(SPECS / "slow.yaml", set_values={"lines": 300}, name=wf_name)
    monitor = WorkflowMonitor(wf, live=False)  # reads the log now, subscribes to nothing
    try:
        wait_for(lambda: monitor.tasks and wf.task("ticker")["status"] == "RUNNING", 30)
        monitor.select("ticker")
        read = len(monitor.log_lines)
        wait_for(lambda: len(wf.log_lines("ticker")) >= read + 3, 30)  # the gap
        monitor._watch = monitor.client.watch(wf.id, monitor._on_event, logs=True)
        wait_for(lambda: len(monitor.log_lines) >= read + 6, 30)
        lines = monitor.log_lines
        assert lines == [f"tick {i}" for i in range(1, len(lines) + 1)]
    finally:
        wf.cancel()
        monitor.close()


def test_static_views_show_the_same_facts(server_env, wf_name):
    wf = Client().submit(SPECS / "chain.yaml", name=wf_name)
    wf.wait(timeout=60)
    bundle = wf._repr_mimebundle_()
    html, md, text = bundle["text/html"], bundle["text/markdown"], bundle["text/plain"]
    assert not any("widget" in k for k in bundle)  # no kernel here: static only
    for view in (html, md, text):
        assert wf.id in view and "make" in view and "use" in view and "COMPLETED" in view
    assert "| use | COMPLETED | 1 | 0 |" in md  # first attempt, exit 0
    assert md.rstrip().endswith("| make |")
    assert "#2e7d32" in html  # COMPLETED's colour


def test_workflow_list_refreshes(server_env, wf_name):
    client = Client()
    listing = WorkflowList(client, limit=200)
    before = {r["id"] for r in listing.rows}
    wf = client.submit(SPECS / "chain.yaml", name=wf_name)
    assert wf.id not in before
    listing._handle_custom_msg({"action": "refresh"}, [])  # the Refresh button
    assert wf.id in {r["id"] for r in listing.rows}
    bundle = listing._repr_mimebundle_()
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    assert wf.id in data["text/html"] and wf.id in data["text/plain"]


def test_monitor_of_a_finished_workflow_never_shows_old_states(server_env, wf_name):
    wf = Client().submit(SPECS / "chain.yaml", name=wf_name)
    assert wf.wait(timeout=60) == "COMPLETED"
    monitor = WorkflowMonitor(wf)  # the replay of every stored event follows its first read
    seen: list[str] = []
    monitor.observe(lambda ch: seen.extend(t["status"] for t in ch["new"]), "tasks")
    monitor.observe(lambda ch: seen.append(ch["new"]), "status")
    try:
        assert monitor.settle(10)
        assert monitor.status == "COMPLETED"
        assert [t["last_lines"] for t in monitor.tasks] == [["made"], ["hello from make"]]
        assert set(seen) <= {"COMPLETED"}
    finally:
        monitor.close()

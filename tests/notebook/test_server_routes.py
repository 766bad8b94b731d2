"""The client on the routes the lead engineer adds to the API (restart, one task, log follow).

`Workflow.task()` and `Workflow.logs(follow=True)` also work on a server without their routes
(they fall back to the workflow and the events WebSocket); `restart()` needs
`POST workflows/{id}/restart`.
"""

from __future__ import annotations

from pathlib import Path

from osmo_jupyter import Client

SPECS = Path(__file__).parent / "specs"


def test_restart_runs_the_stored_spec_again(server_env, wf_name):
    wf = Client().submit(SPECS / "chain.yaml", set_values={"greeting": "again"}, name=wf_name)
    assert wf.wait(timeout=60) == "COMPLETED"
    new = wf.restart()
    assert new.id == f"{wf_name}-2"
    assert new.wait(timeout=60) == "COMPLETED"
    assert new.logs("use") == ["again from make"]  # same values


def test_task_has_every_attempt_and_follow_ends_with_the_attempt(server_env, wf_name):
    wf = Client().submit(SPECS / "slow.yaml", set_values={"lines": 3}, name=wf_name)
    assert list(wf.logs("ticker", follow=True, timeout=30)) == ["tick 1", "tick 2", "tick 3"]
    task = wf.task("ticker")
    assert task["status"] == "COMPLETED" and [a["retry_id"] for a in task["attempts"]] == [0]


def test_monitor_restart_button_follows_the_new_workflow(server_env, wf_name):
    from osmo_jupyter.widgets import WorkflowMonitor

    wf = Client().submit(SPECS / "chain.yaml", name=wf_name)
    monitor = WorkflowMonitor(wf)
    try:
        assert wf.wait(timeout=60) == "COMPLETED"
        monitor._handle_custom_msg({"action": "restart"}, [])  # the Restart button
        assert monitor.workflow_id == f"{wf_name}-2" and monitor.error == ""
        assert monitor.workflow.wait(timeout=60) == "COMPLETED"
        assert monitor.status == "COMPLETED"
    finally:
        monitor.close()

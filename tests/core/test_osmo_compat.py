"""OSMO's workflow files, run here: each test takes a difference found with OSMO's published
files and code (`src/utils/job/workflow.py`, `task.py`, `jobs.py`) and expects OSMO's outcome,
or the deliberate difference that docs/workflow-spec.md states."""

from __future__ import annotations

import asyncio
import json
import textwrap
from pathlib import Path

import pytest

from osmo_core.backends.local import LocalBackend
from osmo_core.errors import PlacementError, Problem, SpecError
from osmo_core.service import Service
from osmo_core.spec import load_spec
from osmo_core.spec.localfiles import inline_localpaths
from tests.core.test_cli import osmo
from tests.core.test_engine import latest, run, task


def problems(text: str) -> list[Problem]:
    with pytest.raises(SpecError) as info:
        load_spec(textwrap.dedent(text), file="t.yaml")
    return info.value.problems


# --- names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fix"),
    [
        ("1abc", "abc"),  # OSMO: a name begins with a letter
        ("a.b", "a-b"),  # OSMO: no '.'
        ("ends-", "ends"),  # OSMO: ends with a letter or digit
        ("a" * 65, "a" * 64),
    ],
)
def test_names_follow_osmos_rule_with_a_fix(name: str, fix: str) -> None:
    (p,) = problems(f"""\
        workflow:
          name: w
          tasks:
          - name: "{name}"
            command: [x]
        """)
    assert (p.line, p.field) == (4, "workflow.tasks[0].name")
    assert p.message.startswith("invalid name ")
    assert p.hint is not None and p.hint.startswith(f"did you mean '{fix}'? (use letters")


def test_names_valid_in_osmo_pass() -> None:
    spec = load_spec(
        "workflow: {name: W_1, tasks: [{name: a, command: [x]}, {name: Bb_9-x, command: [x]}]}"
    )
    assert [t.name for t in spec.workflow.all_tasks()] == ["a", "Bb_9-x"]


def test_names_share_one_namespace_ignoring_case_and_underscores() -> None:
    found = problems("""\
        workflow:
          name: w
          groups:
          - name: Train_1
            tasks:
            - {name: a, command: [x]}
          - name: g
            tasks:
            - {name: train-1, command: [x]}
            - {name: g, command: [x], lead: true}
        """)
    assert [(p.line, p.field) for p in found] == [
        (9, "workflow.groups[1].tasks[0].name"),
        (10, "workflow.groups[1].tasks[1].name"),
    ]
    assert found[0].message == (
        "duplicate task name 'train-1' (the same as 'Train_1'); also defined at line 4"
    )
    # OSMO compares a group's name with its own tasks' too
    assert found[1].message == "duplicate task name 'g'; also defined at line 7"


def test_osmo_ctrl_is_reserved() -> None:
    (p,) = problems("""\
        workflow:
          name: w
          tasks:
          - {name: OSMO_ctrl, command: [x]}
        """)
    assert p.field == "workflow.tasks[0].name" and "reserved" in p.message


# --- tasks and groups ----------------------------------------------------------------------------


def test_tasks_and_groups_together_are_refused() -> None:
    (p,) = problems("""\
        workflow:
          name: w
          tasks:
          - {name: a, command: [x]}
          groups:
          - name: g
            tasks: [{name: b, command: [x]}]
        """)
    assert (p.line, p.field) == (5, "workflow.groups")
    assert p.message == "Cannot use both groups and tasks in the same workflow"


async def test_a_group_of_one_task_is_led_by_it(service: Service) -> None:
    spec = {
        "workflow": {
            "name": "solo",
            "groups": [{"name": "g", "tasks": [task("only", "echo hi")]}],
        }
    }
    wf = await run(service, spec)
    assert wf["status"] == "COMPLETED" and latest(wf)["only"]["status"] == "COMPLETED"


async def test_a_failed_lead_fails_its_running_peers(service: Service) -> None:
    """OSMO's jobs.py: when the lead ends, the peers still running end with it, FAILED when
    the lead failed (not with the lead's own failure status), "Lead task finished"."""
    spec = {
        "workflow": {
            "name": "led",
            "resources": {"default": {"cpu": 0.5}},
            "groups": [
                {
                    "name": "g",
                    "tasks": [task("lead", "exit 7", lead=True), task("peer", "sleep 60")],
                }
            ],
        }
    }
    wf = await run(service, spec)
    t = latest(wf)
    assert (t["lead"]["status"], t["lead"]["exit_code"]) == ("FAILED", 7)
    assert (t["peer"]["status"], t["peer"]["message"]) == ("FAILED", "Lead task finished")
    assert wf["status"] == "FAILED"


# --- YAML ----------------------------------------------------------------------------------------


def test_duplicate_key_warns_located_on_validate(osmo_env: dict[str, str], tmp_path: Path) -> None:
    f = tmp_path / "dup.yaml"
    f.write_text("workflow:\n  name: w\n  tasks:\n  - name: a\n    command: [x]\n    name: b\n")
    r = osmo(osmo_env, "workflow", "validate", str(f))
    assert r.returncode == 0, r.stderr
    assert (
        f"warning: {f}:6:5: workflow.tasks[0].name: duplicate key 'name'; the last one is kept"
        in r.stderr
    )


# --- exit codes and exit actions -----------------------------------------------------------------


async def test_exit_action_keys_ignore_case_and_upstream_failure_is_3000(service: Service) -> None:
    spec = {
        "workflow": {
            "name": "codes",
            "tasks": [
                task("soft", "exit 3", exitActions={"complete": "3", "Fail": "1-2"}),
                task("hard", "exit 1"),
                task("after", "true", inputs=[{"task": "hard"}]),
            ],
        }
    }
    wf = await run(service, spec)
    t = latest(wf)
    assert (t["soft"]["status"], t["soft"]["exit_code"]) == ("COMPLETED", 3)
    assert (t["hard"]["status"], t["hard"]["exit_code"]) == ("FAILED", 1)
    assert (t["after"]["status"], t["after"]["exit_code"]) == ("FAILED_UPSTREAM", 3000)


def test_any_reserved_code_may_be_named() -> None:
    spec = load_spec(
        "workflow: {name: w, tasks: [{name: a, command: [x], "
        "exitActions: {RESCHEDULE: '2010-2014,3001,3004,3006', FAIL: '4000'}}]}"
    )
    (a,) = spec.workflow.all_tasks()
    assert [a.exit_action(c).value for c in (2011, 3006, 4000)] == ["RESCHEDULE"] * 2 + ["FAIL"]


def test_restart_is_not_an_exit_action() -> None:
    (p,) = problems("""\
        workflow:
          name: w
          tasks:
          - name: a
            command: [x]
            exitActions:
              restart: 1
        """)
    assert (p.line, p.field) == (7, "workflow.tasks[0].exitActions.restart")
    assert p.message.startswith("RESTART is not an exit action") and "RESCHEDULE" in p.message


async def test_a_workflow_takes_its_failed_groups_one_cause(service: Service) -> None:
    """OSMO's workflow statuses include the task failures; a workflow whose failed groups
    (but those blocked upstream) failed the same way ends so (OSMO's workflow.py)."""
    spec = {
        "workflow": {
            "name": "nostart",
            "tasks": [
                {"name": "t", "command": ["/definitely/not/a/command"]},
                task("after", "true", inputs=[{"task": "t"}]),
            ],
        }
    }
    wf = await run(service, spec)
    assert [t["status"] for t in wf["tasks"]] == ["FAILED_START_ERROR", "FAILED_UPSTREAM"]
    assert wf["status"] == "FAILED_START_ERROR"


# --- long cycles ---------------------------------------------------------------------------------


def test_a_long_cycle_is_shortened() -> None:
    n = 3000
    tasks = [
        {"name": f"t{i}", "command": ["x"], "inputs": [{"task": f"t{(i + 1) % n}"}]}
        for i in range(n)
    ]
    with pytest.raises(SpecError) as info:
        load_spec({"workflow": {"name": "ring", "tasks": tasks}})
    (p,) = info.value.problems
    assert len(p.message) < 200, p.message
    assert p.message.startswith("cycle: ") and "(2991 more)" in p.message
    assert p.message.endswith("(3000 groups)")
    names = p.message.removeprefix("cycle: ").split(" -> ")
    assert names[0] == names[-1].split(" ")[0]  # the cycle closes on its first name


# --- inputs from an earlier workflow -------------------------------------------------------------


async def test_an_input_from_a_task_of_an_earlier_workflow(service: Service) -> None:
    """OSMO's `task: <workflow_id>:<task>`: the output of a task of an earlier workflow, its
    name usable in `{{input:<task>}}`; refused, located, unless that task COMPLETED in a
    workflow of the submitter's."""
    first = await run(
        service,
        {
            "workflow": {
                "name": "make",
                "tasks": [
                    task("data", "echo made > {{output}}/x.txt"),
                    task("broken", "exit 1"),
                ],
            }
        },
        user="alice",
    )

    def reader(ref: str) -> dict:
        name = ref.partition(":")[2]  # `{{input:<task>}}` names it by its task, as in OSMO
        script = f"cat {{{{input:{name}}}}}/x.txt {{{{input:0}}}}/x.txt"
        return {"workflow": {"name": "use", "tasks": [task("r", script, inputs=[{"task": ref}])]}}

    wf = await run(service, reader(f"{first['id']}:data"), user="alice")
    assert wf["status"] == "COMPLETED"
    assert [ln.text for ln in await service.logs(wf["id"], "r")] == ["made", "made"]

    for ref, user, why in [
        (f"{first['id']}:broken", "alice", "is FAILED, not COMPLETED"),
        (f"{first['id']}:nope", "alice", "has no task 'nope'"),
        ("gone-1:data", "alice", "no workflow 'gone-1' of yours"),
        (f"{first['id']}:data", "bob", f"no workflow '{first['id']}' of yours"),
    ]:
        with pytest.raises(PlacementError) as e:
            await service.submit(reader(ref), user=user)
        (p,) = e.value.problems
        assert p.field == "workflow.tasks[0].inputs[0].task" and why in p.message, p


# --- files ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ("[{path: a.sh, contents: x}, {path: ./a.sh, contents: y}]", "duplicate file path"),
        ("[{path: '', contents: x}]", "file path is empty"),
        ("[{path: /osmo/run.sh, contents: x}]", "/osmo"),
        ("[{path: b.bin, contents: '@@', base64: true}]", "not valid base64"),
    ],
)
def test_files_osmo_refuses_at_submit_are_refused_at_validate(files: str, message: str) -> None:
    (p,) = problems(f"""\
        workflow:
          name: w
          tasks:
          - name: a
            command: [x]
            files: {files}
        """)
    assert p.line == 6 and p.field.startswith("workflow.tasks[0].files[")
    assert message in p.message


async def test_tokens_in_a_localpath_file_are_substituted(service: Service, tmp_path: Path) -> None:
    """OSMO's CLI inlines a `localpath` file's text before submitting, so the tokens in it are
    substituted like those of `contents`."""
    (tmp_path / "run.sh").write_text("echo out={{output}} wf={{workflow_id}}\n")
    text = (
        "workflow:\n  name: lp\n  tasks:\n  - name: t\n    command: [sh, run.sh]\n"
        "    files:\n    - path: run.sh\n      localpath: run.sh\n"
    )
    inline, _ = inline_localpaths(text, base=tmp_path, file=str(tmp_path / "w.yaml"))
    wf = await run(service, inline)
    (line,) = await service.logs(wf["id"], "t")
    assert line.text.startswith("out=/") and line.text.endswith(f" wf={wf['id']}"), line.text


# --- submit options -----------------------------------------------------------------------------


def test_set_types_values_as_osmo_and_set_string_keeps_strings(
    osmo_env: dict[str, str], tmp_path: Path
) -> None:
    """OSMO's TemplateSpec: `--set` tries int, then float, then string, with or without a
    default; `--set-string` keeps the string."""
    f = tmp_path / "t.yaml"
    f.write_text(
        "workflow:\n  name: t\n  tasks:\n  - name: a\n"
        "    command: [echo, '{{ n + 1 }}', '{{ x * 2 }}', '{{ s ~ 1 }}', '{{ w }}']\n"
    )
    sets = ["--set", "n=2", "x=0.5", "w=word", "--set-string", "s=2"]
    r = osmo(osmo_env, "workflow", "run", str(f), "--dry-run", *sets)
    assert r.returncode == 0, r.stderr
    assert "command: [echo, '3', '1.0', '21', 'word']" in r.stdout, r.stdout


def test_set_env_and_label_on_submit(osmo_env: dict[str, str], tmp_path: Path) -> None:
    """OSMO's submit: `--set-env K=V` sets the variable in every task, over the spec's;
    `--label K=V` sets a label over the spec's, and the labels are stored and shown."""
    f = tmp_path / "e.yaml"
    f.write_text(
        "workflow:\n  name: e\n  labels: {team: a, stage: dev}\n  tasks:\n"
        "  - name: t\n    environment: {GREETING: spec}\n"
        "    command: [sh, -c, 'echo $GREETING $OTHER']\n"
    )
    opts = ["--set-env", "GREETING=hi", "OTHER=x=y", "--label", "stage=prod"]
    r = osmo(osmo_env, "workflow", "run", str(f), *opts, "--format", "json")
    assert r.returncode == 0, r.stderr
    wf = json.loads(r.stdout)
    assert wf["labels"] == {"team": "a", "stage": "prod"}
    log = Path(osmo_env["OSMO_HOME"]) / "runs" / wf["id"] / "t" / "0" / "log"
    assert log.read_text().split(" ", 2)[2] == "hi x=y\n"  # OSMO's server would cut at a 2nd =
    r = osmo(osmo_env, "workflow", "run", str(f), "--label", "bad key=1")
    assert r.returncode == 2 and "--label.bad key: invalid label key 'bad key'" in r.stderr


# --- what the API and the CLI show ---------------------------------------------------------------


def test_priority_shows_by_its_name(osmo_env: dict[str, str], tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text("workflow: {name: p, tasks: [{name: a, command: [true]}]}\n")
    r = osmo(osmo_env, "workflow", "run", str(f), "--priority", "LOW", "--format", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["priority"] == "LOW"  # OSMO's JSON; 0 before (API: test_handlers)


# --- units ---------------------------------------------------------------------------------------


def test_memory_1g_is_a_gibibyte_as_in_osmo() -> None:
    spec = load_spec(
        "workflow: {name: w, resources: {default: {memory: 1G, storage: 2GiB}}, "
        "tasks: [{name: a, command: [x]}]}"
    )
    res = spec.workflow.resources["default"]
    assert (res.memory, res.storage) == (2**30, 2 * 2**30)


# --- retries -------------------------------------------------------------------------------------


async def test_the_default_retry_budget_is_osmos_zero(service: Service) -> None:
    """OSMO's `max_retry_per_task` defaults to 0: a RESCHEDULE applies only within a budget
    configured for it; past it the attempt ends as its exit code says (jobs.py)."""
    spec = {
        "workflow": {
            "name": "again",
            "tasks": [
                task("z", "true", exitActions={"RESCHEDULE": "0"}),
                task("three", "exit 3", exitActions={"RESCHEDULE": "3"}),
            ],
        }
    }
    wf = await run(service, spec)
    assert [(t["name"], t["retry_id"], t["status"], t["exit_code"]) for t in wf["tasks"]] == [
        ("z", 0, "COMPLETED", 0),
        ("three", 0, "FAILED", 3),
    ]
    assert all("retry budget (0) exhausted" in t["message"] for t in wf["tasks"])


async def test_reschedule_on_exit_0_past_the_budget_stays_completed(service_factory) -> None:
    service = await service_factory(max_retries=1)
    spec = {
        "workflow": {"name": "again", "tasks": [task("z", "true", exitActions={"RESCHEDULE": "0"})]}
    }
    wf = await run(service, spec)
    tries = [t for t in wf["tasks"] if t["name"] == "z"]
    assert [(t["status"], t["exit_code"]) for t in tries] == [("RESCHEDULED", 0), ("COMPLETED", 0)]
    assert "retry budget (1) exhausted" in tries[-1]["message"]
    assert wf["status"] == "COMPLETED"


# --- the local machine's CPUs --------------------------------------------------------------------

GROUP_TASKS = """\
workflow:
  name: grouped-workflow
  groups:
  - name: parallel-processing
    tasks:
    - name: processor-1
      lead: true
      command: [bash, -c]
      args: ["sleep 0.3; echo one"]
    - name: processor-2
      command: [bash, -c]
      args: ["echo two"]
    - name: processor-3
      command: [bash, -c]
      args: ["echo three"]
"""


async def test_osmos_group_tasks_tutorial_runs_on_two_shared_cores(service_factory) -> None:
    """OSMO's cookbook/tutorials/group_tasks.yaml (images left out, shorter sleeps): a barrier
    group of three 1-CPU tasks, on a 2-core local machine whose CPUs are shared."""
    service = await service_factory(local={"cpus": 2, "cpu_shared": True})
    wf = await run(service, GROUP_TASKS)
    assert wf["status"] == "COMPLETED"
    assert {n: t["status"] for n, t in latest(wf).items()} == dict.fromkeys(
        ["processor-1", "processor-2", "processor-3"], "COMPLETED"
    )


async def test_declared_cores_are_strict_and_detected_ones_shared(service_factory) -> None:
    strict = await service_factory(local={"cpus": 2})
    with pytest.raises(PlacementError) as e:
        await strict.submit(GROUP_TASKS)
    assert "needs cpu 3, gpu 0 at once" in str(e.value)
    (node,) = await LocalBackend("local", {"root": "/nonexistent-osmo-root"}).nodes()
    assert node.cpu_shared  # no `cpus` given: the machine's CPUs are shared


async def test_shared_cores_take_at_most_four_times_the_machine_at_once(service_factory) -> None:
    """Sharing is bounded: 12 one-CPU tasks on 2 shared cores run 8 at a time, the rest wait
    (a wide workflow on a laptop must not start every task at once)."""
    service = await service_factory(local={"cpus": 2, "cpu_shared": True})
    tasks = "".join(f"  - name: t{i}\n    command: [sh, -c, 'sleep 30']\n" for i in range(12))
    wf_id = await service.submit(f"workflow:\n  name: wide\n  tasks:\n{tasks}")
    try:
        for _ in range(200):  # bounded: 20 s
            running = [t for t in latest(service.get(wf_id)).values() if t["status"] == "RUNNING"]
            if len(running) == 8:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # a ninth would have started by now
        statuses = [t["status"] for t in latest(service.get(wf_id)).values()]
        assert statuses.count("RUNNING") == 8 and statuses.count("SCHEDULING") == 4
    finally:
        await service.cancel(wf_id)

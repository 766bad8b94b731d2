"""The spec loader: OSMO files load unchanged; every bad input is reported, located, in one pass."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from osmo_core.errors import Problem, SpecError
from osmo_core.spec import (
    LoadedSpec,
    Workflow,
    load_spec,
    parse_set_values,
    validate_workflow,
)
from osmo_core.spec.models import ExitAction
from tests.conftest import EXAMPLES

SPECS = Path(__file__).parent / "specs"


def load(text: str, **kw: object) -> LoadedSpec:
    return load_spec(textwrap.dedent(text), file="t.yaml", **kw)  # type: ignore[arg-type]


def problems(text: str, **kw: object) -> list[Problem]:
    with pytest.raises(SpecError) as info:
        load(text, **kw)
    return info.value.problems


def only(text: str, **kw: object) -> Problem:
    found = problems(text, **kw)
    assert len(found) == 1, found
    return found[0]


# --- valid files ---------------------------------------------------------------------------------


def test_every_osmo_field_loads() -> None:
    loaded = load_spec((SPECS / "osmo_features.yaml").read_text(), file="osmo_features.yaml")
    wf = loaded.workflow
    assert loaded.spec.version == 2 and wf.name == "robot-training" and wf.pool == "default"
    assert wf.labels == {"team": "robotics", "priority": "3"}
    assert wf.timeout.exec_timeout == 28800.0 and wf.timeout.queue_timeout == 1800.0
    default, gpu = wf.resources["default"], wf.resources["gpu-node"]
    assert default.cpu == 0.5 and default.memory == 16 * 2**30 and default.storage == 100 * 2**30
    assert (gpu.cpu, gpu.gpu, gpu.platform) == (8.0, 2, "dgx")
    assert gpu.nodes_excluded == ["node-7", "node-9"]

    group, training = wf.groups or []
    server, client = group.tasks
    assert group.lead is server and not group.ignore_nonlead_status
    assert server.privileged and server.host_network and server.volume_mounts == ["/dev/shm"]
    assert server.credentials == {
        "registry-cred": "/root/.docker",
        "s3-cred": {"AWS_ACCESS_KEY_ID": "access_key_id"},
    }
    assert server.files[0].contents == (
        'echo "serving {{workflow_id}}"\npython -m http.server 8000 > {{output}}/server.log\n'
    )
    assert client.environment == {"SERVER": "{{host:server}}", "RETRIES": "5"}
    assert client.args == ["curl http://{{ host:server }}:8000 > {{output}}/page.html"]

    (train,) = training.tasks
    assert training.lead is train  # a group of one task is led by it, as in OSMO
    assert train.args[1::2] == ["{{input:0}}", "{{input:client}}", "{{output}}"]
    assert [i.task for i in train.inputs] == ["server", "client", None, None]
    assert train.inputs[3].dataset and train.inputs[3].dataset.regex == "^episode_[0-9]+/"
    assert train.exit_action(0) is ExitAction.COMPLETE
    assert train.exit_action(7) is ExitAction.COMPLETE
    assert train.exit_action(16) is ExitAction.COMPLETE
    assert train.exit_action(12) is ExitAction.FAIL
    assert train.exit_action(137) is ExitAction.RESCHEDULE
    assert train.exit_action(17) is None
    assert train.max_retries == 2 and train.checkpoint[0].frequency == 600.0
    assert loaded.rendered == loaded.original  # nothing to template
    assert validate_workflow(wf) == []


def test_templated_sweep_renders_groups_and_keeps_tokens() -> None:
    text = (SPECS / "sweep.yaml").read_text()
    loaded = load_spec(text, file="sweep.yaml")
    wf = loaded.workflow
    assert wf.name == "lr-sweep" and wf.resources["default"].gpu == 1
    *lrs, summary = wf.groups or []
    assert [g.name for g in lrs] == ["lr-0", "lr-1", "lr-2"]
    assert [t.command[3] for g in lrs for t in g.tasks] == ["0.1", "0.01", "0.001"]
    assert all(t.command[-1] == "{{output}}" for g in lrs for t in g.tasks)
    (report,) = summary.tasks
    assert report.args == ["cat {{input:0}} {{input:1}} {{input:2}} > {{ output }}/all"]
    assert [i.task for i in report.inputs] == ["trainer-0", "trainer-1", "trainer-2"]
    # default-values is consumed; the reserved name `output` in it is ignored without a word
    assert loaded.values == {
        "name": "lr-sweep",
        "gpus": 1,
        "with_monitor": False,
        "learning_rates": [0.1, 0.01, 0.001],
    }
    assert loaded.original == text and "default-values" not in loaded.rendered


def test_set_overrides_default_values() -> None:
    text = (SPECS / "sweep.yaml").read_text()
    values = parse_set_values(["name=tuned", "gpus=4", "with_monitor=true", "output=/x"])
    loaded = load_spec(text, file="sweep.yaml", set_values=values)
    wf = loaded.workflow
    assert wf.name == "tuned" and wf.resources["default"].gpu == 4
    # --set strings take the type of their default, so `{% if with_monitor %}` sees a boolean
    assert loaded.values["gpus"] == 4 and loaded.values["with_monitor"] is True
    assert "output" not in loaded.values
    monitor = (wf.groups or [])[1].tasks[1]
    assert monitor.name == "monitor-1" and monitor.command[-1] == "watch {{host:trainer-1}}"


def test_set_values_without_a_default_stay_strings() -> None:
    loaded = load(
        """\
        workflow:
          name: w
          tasks:
          - name: t
            command: [echo, "{{ seed }}", "{{ seed is string }}"]
        """,
        set_values={"seed": "007"},
    )
    assert loaded.workflow.all_tasks()[0].command == ["echo", "007", "True"]


def test_reserved_names_in_set_are_ignored() -> None:
    loaded = load(
        """\
        workflow:
          name: w
          tasks:
          - name: t
            command: [echo, "{{workflow_id}}", "{{ greeting }}"]
        default-values:
          greeting: hi
        """,
        set_values={"workflow_id": "forced", "host": "h"},
    )
    assert loaded.workflow.all_tasks()[0].command == ["echo", "{{workflow_id}}", "hi"]
    assert loaded.values == {"greeting": "hi"}


def test_default_values_first_keeps_line_numbers() -> None:
    p = only("""\
        default-values:
          n: 1
        workflow:
          name: w
          tasks:
          - name: t
            command: [echo, "{{ n }}"]
            bogus: 1
        """)
    assert (p.line, p.column, p.field) == (8, 5, "workflow.tasks[0].bogus")


def test_no_jinja_means_no_rendering() -> None:
    text = """\
        workflow:
          name: w
          tasks:
          - name: t
            command: [sh, -c, 'a=(1 2); echo ${#a[@]} {{ output }} {{workflow_id}} {%raw']
        """
    # `{%raw` alone is not Jinja syntax to PyYAML but is to Jinja: only real tokens may skip it
    with pytest.raises(SpecError, match="template syntax error"):
        load(text)
    loaded = load(text.replace(" {%raw", ""))
    assert loaded.rendered == loaded.original
    assert (
        loaded.workflow.all_tasks()[0].command[2] == "a=(1 2); echo ${#a[@]} {{ output }} "
        "{{workflow_id}}"
    )


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_repository_examples_load(path: Path) -> None:
    loaded = load_spec(path.read_text(), file=str(path))
    assert loaded.workflow.all_tasks()
    assert validate_workflow(loaded.workflow) == []


def test_anchors_and_merge_keys() -> None:
    loaded = load("""\
        workflow:
          name: w
          tasks:
          - &base
            name: a
            image: ubuntu:24.04
            command: [echo, a]
          - <<: *base
            name: b
            inputs: [{task: a}]
        """)
    _, b = loaded.workflow.all_tasks()
    assert (b.name, b.image, b.command, b.inputs[0].task) == (
        "b",
        "ubuntu:24.04",
        ["echo", "a"],
        "a",
    )


def test_yaml_11_scalars_as_pyyaml_reads_them() -> None:
    loaded = load("""\
        workflow:
          name: w
          labels: {a: yes, b: 1.5, c: '7', d: '2001-12-14'}
          tasks:
          - name: t
            command: [echo, 0x10, !!str 12, 1_000]
            image: ~
            lead: on
        """)
    wf = loaded.workflow
    assert wf.labels == {"a": "true", "b": "1.5", "c": "7", "d": "2001-12-14"}
    task = wf.all_tasks()[0]
    assert task.command == ["echo", "16", "12", "1000"] and task.image is None and task.lead


def test_yaml_dates_must_be_quoted_where_text_is_expected() -> None:
    p = only("""\
        workflow:
          name: w
          labels: {created: 2024-01-31}
          tasks: [{name: t, command: [x]}]
        """)
    assert (p.field, p.message) == ("workflow.labels.created", "expected a string, got a date")
    assert p.hint == "YAML reads 2024-01-31 as a date; quote it to keep it as text"


def test_load_from_dict() -> None:
    source = {
        "version": 2,
        "workflow": {
            "name": "nb",
            "tasks": [
                {"name": "a", "command": ["echo", "{{output}}"]},
                {"name": "b", "command": ["cat", "{{input:0}}"], "inputs": [{"task": "a"}]},
            ],
        },
        "default-values": {"x": 1},
    }
    loaded = load_spec(source)
    assert [t.name for t in loaded.workflow.all_tasks()] == ["a", "b"]
    assert "default-values" in source  # the caller's dict is left alone
    assert "default-values:" in loaded.original and "default-values" not in loaded.rendered
    assert loaded.values == {} and loaded.file == "<spec>"


def test_dict_errors_have_fields_but_no_lines() -> None:
    with pytest.raises(SpecError) as info:
        load_spec({"workflow": {"name": "nb", "tasks": [{"name": "a", "comand": ["x"]}]}})
    assert [(p.field, p.line) for p in info.value.problems] == [
        ("workflow.tasks[0].command", None),
        ("workflow.tasks[0].comand", None),
    ]


def test_dict_spec_is_not_templated() -> None:
    with pytest.raises(SpecError, match="not templated"):
        load_spec({"workflow": {}}, set_values={"a": "1"})


def test_parse_set_values() -> None:
    assert parse_set_values(["a=1", "b=x=y", "c=", " k =  v ", "f=2.5", "e=1e3"]) == {
        "a": 1,  # OSMO's rule: an int, else a float, else the string
        "b": "x=y",
        "c": "",
        "k": "  v ",
        "f": 2.5,
        "e": 1000.0,
    }
    # --set-string keeps strings, and wins over --set (OSMO applies it after)
    assert parse_set_values(["a=1", "b=2"], ["a=01"]) == {"a": "01", "b": 2}
    with pytest.raises(SpecError) as info:
        parse_set_values(["ok=1", "novalue", "=2"], ["bad"])
    assert [
        (p.field, any(s in p.message for s in ("novalue", "'=2'", "'bad'")))
        for p in info.value.problems
    ] == [("--set", True), ("--set", True), ("--set-string", True)]


def test_locate_places_later_problems() -> None:
    loaded = load("""\
        workflow:
          name: w
          resources:
            default:
              platform: arm
          tasks:
          - name: t
            command: [x]
        """)
    p = loaded.locate(Problem("no such platform", field="workflow.resources.default.platform"))
    assert (p.file, p.line, p.column) == ("t.yaml", 5, 17)


def test_validate_workflow_on_a_built_model() -> None:
    wf = Workflow.model_validate(
        {
            "name": "nb",
            "tasks": [
                {"name": "a", "command": ["x"]},
                {"name": "a", "command": ["y"], "resource": "big"},
            ],
        }
    )
    found = validate_workflow(wf)
    assert [(p.field, p.line) for p in found] == [
        ("workflow.tasks[1].name", None),
        ("workflow.tasks[1].resource", None),
    ]
    assert "also defined at workflow.tasks[0].name" in found[0].message


# --- schema problems -----------------------------------------------------------------------------


def test_unknown_field_with_did_you_mean() -> None:
    p = only("""\
        workflow:
          name: w
          tasks:
          - name: t
            comand: [echo]
            command: [echo]
        """)
    assert (p.line, p.column, p.field) == (5, 5, "workflow.tasks[0].comand")
    assert p.message == "unknown field 'comand'" and p.hint == "did you mean 'command'?"


def test_unknown_field_lists_valid_fields() -> None:
    p = only("""\
        workflow:
          name: w
          timeout: {exec_timeout: 1h, wallclock: 2h}
          tasks: [{name: t, command: [x]}]
        """)
    assert (p.line, p.column, p.field) == (3, 31, "workflow.timeout.wallclock")
    assert p.hint == "valid fields: exec_timeout, queue_timeout"


def test_missing_command_points_at_the_task() -> None:
    p = only("""\
        workflow:
          name: w
          tasks:
          - name: ok
            command: [x]
          - name: t
            image: ubuntu
        """)
    assert (p.line, p.column, p.field) == (6, 5, "workflow.tasks[1].command")
    assert p.message == "missing required field 'command'"


def test_bad_quantity_points_at_the_value() -> None:
    p = only("""\
        workflow:
          name: w
          resources:
            default:
              memory: 16GB
          tasks: [{name: t, command: [x]}]
        """)
    assert (p.line, p.column, p.field) == (5, 15, "workflow.resources.default.memory")
    assert "'16GB' is not a size" in p.message


def test_bad_duration() -> None:
    p = only("""\
        workflow:
          name: w
          timeout:
            exec_timeout: 1h5m
          tasks: [{name: t, command: [x]}]
        """)
    assert (p.line, p.column, p.field) == (4, 19, "workflow.timeout.exec_timeout")
    assert "'1h5m' is not a duration" in p.message


def test_wrong_types_read_as_plain_words() -> None:
    found = problems("""\
        workflow:
          name: w
          resources: {default: [1]}
          tasks:
          - name: t
            command: echo hi
            lead: maybe
            credentials: {x: 5}
            exitActions: {DONE: 0}
        """)
    assert [(p.line, p.field, p.message) for p in found] == [
        (3, "workflow.resources.default", "expected a mapping, got a list"),
        (6, "workflow.tasks[0].command", "expected a list, got 'echo hi'"),
        (7, "workflow.tasks[0].lead", "expected true or false, got 'maybe'"),
        (8, "workflow.tasks[0].credentials.x", "expected a string or a mapping, got 5"),
        (
            9,
            "workflow.tasks[0].exitActions.DONE",
            "expected 'COMPLETE', 'FAIL' or 'RESCHEDULE', got 'DONE'",
        ),
    ]
    assert found[-1].column == 19  # the key, not its value


def test_bad_names() -> None:
    found = problems("""\
        workflow:
          name: my workflow
          tasks: [{name: -t, command: [x]}]
        """)
    assert [(p.line, p.field) for p in found] == [
        (2, "workflow.name"),
        (3, "workflow.tasks[0].name"),
    ]
    assert found[0].message == "invalid name 'my workflow'" and "letters, digits" in str(
        found[0].hint
    )


def test_an_input_needs_one_source() -> None:
    p = only("""\
        workflow:
          name: w
          tasks:
          - name: a
            command: [x]
          - name: t
            command: [x]
            inputs:
            - url: s3://a/
              task: a
        """)
    assert (p.line, p.field) == (9, "workflow.tasks[1].inputs[0]")
    assert p.message == "an input needs exactly one of `task`, `url` or `dataset` (got task, url)"


def test_version_3_is_refused() -> None:
    p = only("""\
        version: 3
        workflow:
          name: w
          tasks: [{name: t, command: [x]}]
        """)
    assert (p.line, p.column, p.field) == (1, 10, "version")
    assert p.message == "version 3 is not supported; use version: 2"


def test_a_workflow_needs_tasks() -> None:
    p = only("workflow:\n  name: w\n")
    assert (p.line, p.field, p.message) == (1, "workflow", "a workflow needs `tasks` or `groups`")


@pytest.mark.parametrize(
    ("codes", "message", "column"),
    [
        ("5-3", "range '5-3' runs backwards", 17),
        ("5000", "exit code 5000 is out of range 0-4000", 17),
        ("0,x", "'x' is not an exit code", 17),
    ],
)
def test_bad_exit_codes(codes: str, message: str, column: int) -> None:
    p = only(f"""\
        workflow:
          name: w
          tasks:
          - name: t
            command: [x]
            exitActions:
              FAIL: 1
              COMPLETE: {codes}
        """)
    assert (p.line, p.column, p.field) == (8, column, "workflow.tasks[0].exitActions.COMPLETE")
    assert message in p.message


def test_overlapping_exit_codes_point_at_the_second_action() -> None:
    p = only("""\
        workflow:
          name: w
          tasks:
          - name: t
            command: [x]
            exitActions:
              COMPLETE: 0,1-10
              RESCHEDULE: 10
        """)
    assert (p.line, p.column, p.field) == (8, 7, "workflow.tasks[0].exitActions.RESCHEDULE")
    assert (
        p.message == "exit code 10 is given to both COMPLETE and RESCHEDULE; each code may "
        "have one action"
    )


# --- YAML and template problems ------------------------------------------------------------------


def test_yaml_syntax_error() -> None:
    p = only("""\
        workflow:
          name: w
          tasks:
          - name: t
            command: [echo, "unclosed
        """)
    assert (p.line, p.column) == (6, 1) and p.message.startswith("YAML syntax error: ")
    assert "line 5" in str(p.hint)


def test_yaml_tab_indent() -> None:
    p = only("workflow:\n\tname: w\n")
    assert (p.line, p.column) == (2, 1) and "cannot start any token" in p.message


def test_duplicate_yaml_key_warns_and_keeps_the_last() -> None:
    loaded = load("""\
        workflow:
          name: w
          tasks:
          - name: t
            command: [x]
            name: u
        """)
    assert [t.name for t in loaded.workflow.all_tasks()] == ["u"]  # PyYAML's (OSMO's) choice
    (w,) = loaded.warnings
    assert (w.line, w.column, w.field) == (6, 5, "workflow.tasks[0].name")
    assert w.message == "duplicate key 'name'; the last one is kept"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the spec is empty"),
        ("# only a comment\n", "the spec is empty"),
        ("- a\n", "expected a mapping, got a list"),
        ("workflow: {name: w, tasks: [{name: t, command: [x]}]}\n---\nx: 1\n", "one YAML document"),
        ("workflow: *nowhere\n", "unknown alias *nowhere"),
        ("workflow: !!python/object:os.system {}\n", "unsupported YAML tag"),
        ("workflow:\n  <<: 5\n  name: w\n", "`<<` merges a mapping or a list of mappings"),
        ("workflow: &w {a: 1}\nx: &w 2\n", "duplicate anchor &w"),
    ],
)
def test_not_a_spec(text: str, message: str) -> None:
    assert any(message in p.message for p in problems(text))


def test_unresolved_template_variables_all_reported_at_first_use() -> None:
    found = problems("""\
        workflow:
          name: {{ name }}
          tasks:
          - name: train
            command: [python, train.py, --lr, "{{lr}}", --epochs, "{{ epochs }}"]
            args: ["{{ lr }}"]
        default-values:
          name: w
        """)
    assert [(p.field, p.line, p.column) for p in found] == [
        ("default-values.epochs", 5, 63),
        ("default-values.lr", 5, 42),
    ]
    assert found[1].message == "template variable 'lr' has no value"
    assert found[1].hint == "add it under default-values: or pass --set lr=VALUE"


def test_run_time_token_used_as_a_variable() -> None:
    p = only("""\
        workflow:
          name: w
          tasks:
          - name: t
            command: [echo, "{{ output | upper }}", "{{ n }}"]
        default-values:
          n: 1
        """)
    assert (p.line, p.column, p.field) == (5, 25, "default-values.output")
    assert p.message == "'output' is a run-time token, not a template variable"
    assert p.hint == "write it alone, as {{output}}"


def test_jinja_syntax_error() -> None:
    p = only("""\
        workflow:
          name: w
          tasks:
        {% for i in range(2) %}
          - name: t{{ i + }}
            command: [x]
        {% endfor %}
        """)
    assert p.line == 5 and p.message.startswith("template syntax error: unexpected")


def test_jinja_runtime_error_names_its_line() -> None:
    p = only("""\
        workflow:
          name: w
          tasks:
          - name: t
            command: [x, "{{ cfg.missing }}"]
        default-values:
          cfg: {present: 1}
        """)
    assert p.line == 5 and "has no attribute 'missing'" in p.message


def test_problems_after_rendering_name_the_rendered_text() -> None:
    p = only("""\
        workflow:
          name: w
          tasks:
        {% for i in range(3) %}
          - name: t{{ i }}
            command: [x]
        {% endfor %}
          - name: last
            command: [x]
            bogus: 1
        """)
    assert p.file == "t.yaml (rendered)" and p.field == "workflow.tasks[3].bogus"
    assert p.line is not None and p.line > 9


def test_bad_default_values_block() -> None:
    p = only("""\
        workflow:
          name: w
          tasks: [{name: t, command: [x]}]
        default-values:
          a: [1
        """)
    assert p.field == "default-values" and p.line == 6 and "YAML syntax error" in p.message


# --- cross-field problems ------------------------------------------------------------------------


def test_duplicate_task_names_across_groups() -> None:
    found = problems("""\
        workflow:
          name: w
          groups:
          - name: g
            tasks:
            - name: train
              command: [x]
          - name: h
            tasks:
            - name: train
              command: [x]
        """)
    assert [(p.line, p.column, p.field) for p in found] == [
        (10, 13, "workflow.groups[1].tasks[0].name")
    ]
    assert found[0].message == "duplicate task name 'train'; also defined at line 6"


def test_duplicate_group_names_and_group_named_like_a_task() -> None:
    found = problems("""\
        workflow:
          name: w
          groups:
          - name: g
            tasks: [{name: a, command: [x]}]
          - name: g
            tasks: [{name: b, command: [x]}]
          - name: other
            tasks: [{name: solo, command: [x]}]
          - name: solo
            tasks: [{name: c, command: [x]}]
        """)
    assert [(p.line, p.field) for p in found] == [
        (6, "workflow.groups[1].name"),
        (10, "workflow.groups[3].name"),
    ]
    assert found[0].message == "duplicate group name 'g'; also defined at line 4"
    assert found[1].message == "duplicate group name 'solo'; also defined at line 9"
    assert found[1].hint == "tasks and groups share one namespace; names ignore case and '_' is '-'"


def test_unknown_input_task_with_did_you_mean() -> None:
    p = only("""\
        workflow:
          name: w
          tasks:
          - name: preprocess
            command: [x]
          - name: train
            command: [x]
            inputs:
            - task: preproces
        """)
    assert (p.line, p.column, p.field) == (9, 13, "workflow.tasks[1].inputs[0].task")
    assert p.message == "unknown input task 'preproces'" and p.hint == "did you mean 'preprocess'?"


def test_input_from_the_same_group_or_itself() -> None:
    found = problems("""\
        workflow:
          name: w
          groups:
          - name: g
            tasks:
            - name: a
              lead: true
              command: [x]
            - name: b
              command: [x]
              inputs: [{task: a}]
          - name: h
            tasks:
            - name: c
              command: [x]
              inputs: [{task: c}]
        """)
    assert [(p.line, p.field) for p in found] == [
        (11, "workflow.groups[0].tasks[1].inputs[0].task"),
        (16, "workflow.groups[1].tasks[0].inputs[0].task"),
    ]
    assert "in the same group" in found[0].message
    assert found[1].message == "task 'c' takes its own output as input"


def test_cycle_is_named_and_located_at_the_closing_input() -> None:
    p = only("""\
        workflow:
          name: w
          tasks:
          - name: a
            command: [x]
            inputs: [{task: c}]
          - name: b
            command: [x]
            inputs: [{task: a}]
          - name: c
            command: [x]
            inputs: [{task: b}]
          - name: d
            command: [x]
            inputs: [{task: c}]
        """)
    assert p.message.startswith("cycle: ")
    names = p.message.removeprefix("cycle: ").split(" -> ")
    assert names[0] == names[-1] and sorted(names[:-1]) == ["a", "b", "c"]
    closing = {
        "a": ("workflow.tasks[1].inputs[0].task", 9),  # a -> b closes ... -> a -> b
        "b": ("workflow.tasks[2].inputs[0].task", 12),
        "c": ("workflow.tasks[0].inputs[0].task", 6),
    }[names[-2]]
    assert (p.field, p.line) == closing


def test_cycle_through_groups() -> None:
    p = only("""\
        workflow:
          name: w
          groups:
          - name: g1
            tasks:
            - {name: a, lead: true, command: [x], inputs: [{task: b}]}
          - name: g2
            tasks:
            - {name: b, lead: true, command: [x], inputs: [{task: a}]}
        """)
    assert p.message in ("cycle: g1 -> g2 -> g1", "cycle: g2 -> g1 -> g2")


def test_group_leads() -> None:
    found = problems("""\
        workflow:
          name: w
          groups:
          - name: none
            tasks:
            - {name: a, command: [x]}
            - {name: a2, command: [x]}
          - name: two
            tasks:
            - {name: b, lead: true, command: [x]}
            - {name: c, command: [x]}
            - name: d
              lead: true
              command: [x]
          - name: single  # a group of one task is led by it, as in OSMO
            tasks:
            - {name: e, command: [x]}
        """)
    assert [(p.line, p.field) for p in found] == [
        (4, "workflow.groups[0]"),
        (13, "workflow.groups[1].tasks[2].lead"),
    ]
    assert found[0].message == "group 'none' has no lead task; mark one task with lead: true"
    assert (
        found[1].message == "group 'two' has 2 lead tasks ('b', 'd'); exactly one task may "
        "have lead: true"
    )


def test_undefined_resource() -> None:
    found = problems("""\
        workflow:
          name: w
          resources:
            gpu-large: {gpu: 8}
          tasks:
          - {name: a, command: [x]}
          - {name: b, command: [x], resource: default}
          - {name: c, command: [x], resource: gpu-larg}
        """)
    assert [(p.line, p.field, p.message, p.hint) for p in found] == [
        (
            8,
            "workflow.tasks[2].resource",
            "unknown resource 'gpu-larg'",
            "did you mean 'gpu-large'?",
        )
    ]


def test_token_references() -> None:
    found = problems("""\
        workflow:
          name: w
          tasks:
          - name: a
            command: [x]
          - name: b
            command: [sh, -c, "cat {{input:0}} {{input:1}}"]
            environment:
              SRC: "{{ input:z }}"
              PEER: "{{host:aa}}"
            inputs: [{task: a}]
            files:
            - path: /tmp/run.sh
              contents: |
                echo start
                cat {{input:0}}/x {{input:3}}/y
        """)
    assert [(p.field, p.line, p.column, p.message) for p in found] == [
        ("workflow.tasks[1].command[2]", 7, 40, "{{input:1}} but the task has 1 input"),
        (
            "workflow.tasks[1].environment.SRC",
            9,
            13,
            "{{input:z}} but the task has no input from task 'z'",
        ),
        (
            "workflow.tasks[1].environment.PEER",
            10,
            14,
            "{{host:aa}} names no task of this workflow",
        ),
        ("workflow.tasks[1].files[0].contents", 16, 27, "{{input:3}} but the task has 1 input"),
    ]
    assert found[2].hint == "did you mean 'a'?"


def test_bad_files_are_refused_where_they_are_written() -> None:
    found = problems("""\
        workflow:
          name: w
          tasks:
          - name: a
            command: [x]
            files:
            - {path: run.sh, contents: "echo"}
            - {path: ./sub/../run.sh, contents: "echo"}
            - {path: "", contents: "x"}
            - {path: /osmo/run/x, contents: "x"}
            - {path: ../x, contents: "x"}
            - {path: d/, contents: "x"}
            - {path: "a\\0b", contents: "x"}
            - {path: /osmo, contents: "x"}
            - path: b.bin
              base64: true
              contents: "!!!not base64"
            - path: c.bin
              base64: true
              contents: |
                aGVsbG8g
                d29ybGQ=
            - {path: /osmox/ok, contents: "plain text is never decoded: !!!"}
        """)
    assert [(p.line, p.column, p.field, p.message) for p in found] == [
        (
            8,
            14,
            "workflow.tasks[0].files[1].path",
            "duplicate file path './sub/../run.sh'; also written by line 7",
        ),
        (9, 14, "workflow.tasks[0].files[2].path", "file path is empty"),
        (
            10,
            14,
            "workflow.tasks[0].files[3].path",
            "file path '/osmo/run/x' is under /osmo/, which OSMO reserves",
        ),
        (11, 14, "workflow.tasks[0].files[4].path", "file path '../x' leaves the task's directory"),
        (12, 14, "workflow.tasks[0].files[5].path", "file path 'd/' names a folder, not a file"),
        (13, 14, "workflow.tasks[0].files[6].path", "file path contains a NUL character"),
        (
            14,
            14,
            "workflow.tasks[0].files[7].path",
            "file path '/osmo' is under /osmo/, which OSMO reserves",
        ),
        (
            17,
            17,
            "workflow.tasks[0].files[8].contents",
            "contents are not valid base64: Only base64 data is allowed",
        ),
    ]
    assert found[2].hint == "any path outside /osmo/"
    assert found[-1].hint is not None and "line breaks are ignored" in found[-1].hint


@pytest.mark.parametrize(
    ("contents", "error"),
    [
        ("aGVsbG8", "Incorrect padding"),
        ("aGVs-bG8=", "Only base64 data is allowed"),  # the URL-safe alphabet is not base64
        ("aGVsbG8=aGVs", "Excess data after padding"),
        ("aGVsbG8é", "string argument should contain only ASCII characters"),
    ],
)
def test_base64_contents_must_decode(contents: str, error: str) -> None:
    spec = f"""\
        workflow:
          name: w
          tasks:
          - name: a
            command: [x]
            files: [{{path: f, base64: true, contents: "{contents}"}}]
        """
    assert only(spec).message == f"contents are not valid base64: {error}"
    assert load(spec.replace("base64: true, ", "")).workflow  # as plain text it is fine


def test_a_file_name_longer_than_a_file_system_allows() -> None:
    found = only(f"""\
        workflow:
          name: w
          tasks:
          - {{name: a, command: [x], files: [{{path: "d/{"n" * 256}", contents: x}}]}}
        """)
    assert (found.field, found.message) == (
        "workflow.tasks[0].files[0].path",
        "file path has a name longer than 255 bytes",
    )


def test_bad_regexes() -> None:
    found = problems("""\
        workflow:
          name: w
          tasks:
          - name: a
            command: [x]
            outputs: [{url: "s3://b/", regex: "*.txt"}]
          - name: b
            command: [x]
            inputs:
            - task: a
              regex: '[a-'
            - dataset: {name: d, regex: '(x'}
        """)
    assert [(p.line, p.field) for p in found] == [
        (6, "workflow.tasks[0].outputs[0].regex"),
        (11, "workflow.tasks[1].inputs[0].regex"),
        (12, "workflow.tasks[1].inputs[1].dataset.regex"),
    ]
    assert found[0].message == "invalid regex '*.txt': nothing to repeat at position 0"


# --- everything at once, and at scale ------------------------------------------------------------


def test_five_errors_in_one_pass() -> None:
    with pytest.raises(SpecError) as info:
        load_spec((SPECS / "five_errors.yaml").read_text(), file="five_errors.yaml")
    found = info.value.problems
    assert [(p.line, p.field) for p in found] == [
        (5, "workflow.resources.default.memory"),
        (9, "workflow.tasks[0].exec_timeout"),
        (13, "workflow.tasks[1].inputs[0].task"),
        (14, "workflow.tasks[2].name"),
        (17, "workflow.tasks[2].exitActions.COMPLETE"),
    ]
    assert all(p.file == "five_errors.yaml" for p in found)
    text = str(info.value)
    assert text.startswith("invalid workflow spec: 5 problems")
    for internal in ("pydantic", "http", "Input should", "Value error", "ValidationError"):
        assert internal not in text


def test_ten_thousand_tasks() -> None:
    lines = ["workflow:", "  name: big", "  tasks:"]
    for i in range(10_000):
        lines += [
            f"  - name: t{i}",
            "    command: [sh, -c]",
            f'    args: ["echo {i} > {{{{output}}}}/x"]',
        ]
        if i:
            lines += ["    inputs:", f"    - task: t{i // 2}"]
    loaded = load_spec("\n".join(lines) + "\n", file="big.yaml")
    tasks = loaded.workflow.tasks or []
    assert len(tasks) == 10_000 and tasks[-1].inputs[0].task == "t4999"

    bad = "\n".join(lines).replace("- task: t4999", "- task: t99999", 1)
    with pytest.raises(SpecError) as info:
        load_spec(bad + "\n", file="big.yaml")
    (p,) = info.value.problems
    assert p.field == "workflow.tasks[9998].inputs[0].task" and p.line == 5 * 9998 + 4 + 2

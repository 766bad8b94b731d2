"""Cells as tasks: record, compose, run, export; YAML → cells → YAML keeps the meaning."""

from __future__ import annotations

import textwrap

import pytest
import yaml
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from osmo_core.spec import load_spec
from osmo_jupyter.cells import cells_from_yaml
from osmo_jupyter.magics import OsmoMagics

MIXED = textwrap.dedent(
    """\
    default-values:
      who: world
    workflow:
      name: mixed
      resources:
        default:
          cpu: 1
          memory: 256Mi
      tasks:
      - name: prep
        image: python:3.11
        command: [python3, /cells/prep.py]
        files:
        - path: /cells/prep.py
          contents: |
            import os
            open(os.path.join("{{output}}", "msg.txt"), "w").write("hello {{who}}")
      - name: train
        command: [sh, /cells/train.sh]
        files:
        - path: /cells/train.sh
          contents: |
            cat {{input:prep}}/msg.txt
        inputs:
        - task: prep
        resource: default
      - name: report
        command: [sh, -c]
        args: ["echo done; exit 3"]
        environment: {LEVEL: "2"}
        inputs:
        - task: train
        exitActions:
          COMPLETE: 0,3
    """
)


@pytest.fixture
def shell(server_env):
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "osmo_jupyter")
    ip.register_magics(OsmoMagics(ip))
    return ip


def run_cells(shell, sources):
    for src in sources:
        result = shell.run_cell(src)
        assert result.success, (src, result.error_in_exec)


def test_yaml_to_cells_to_yaml_is_identical_in_meaning(shell, tmp_path, capsys):
    cells = cells_from_yaml(MIXED)
    assert [c.splitlines()[0] for c in cells] == [
        "%%osmo workflow-settings",
        "%%osmo task prep --image python:3.11",
        "%%osmo task train --inputs prep --resource default --shell",
        "%%osmo task report --spec",
    ]
    run_cells(shell, cells)
    capsys.readouterr()
    shell.run_line_magic("osmo", "export mixed")
    exported = capsys.readouterr().out
    assert yaml.safe_load(exported) == yaml.safe_load(MIXED)
    assert load_spec(exported).workflow == load_spec(MIXED).workflow

    # and `%osmo import FILE` records the same tasks in a fresh kernel
    (tmp_path / "mixed.yaml").write_text(MIXED)
    shell.register_magics(OsmoMagics(shell))
    shell.run_line_magic("osmo", f"import {tmp_path / 'mixed.yaml'}")
    assert "%%osmo task prep --image python:3.11" in capsys.readouterr().out
    shell.run_line_magic("osmo", "export mixed")
    assert yaml.safe_load(capsys.readouterr().out) == yaml.safe_load(MIXED)


def test_cells_run_as_a_workflow(shell, wf_name):
    run_cells(
        shell,
        [
            "%%osmo task prep --output\n"
            "import os\n"
            "open(os.environ['OSMO_OUTPUT'] + '/n.txt', 'w').write(str(6 * 7))\n",
            "%%osmo task train --inputs prep\n"
            "print('answer', open('{{input:prep}}/n.txt').read())\n",
        ],
    )
    shell.user_ns["wfname"] = wf_name
    result = shell.run_cell("wf = %osmo run-tasks --name $wfname")
    assert result.success, result.error_in_exec
    wf = shell.user_ns["wf"]
    assert wf.wait(timeout=60) == "COMPLETED"
    assert wf.logs("train") == ["answer 42"]
    assert [t.name for t in wf.tasks] == ["prep", "train"]


def test_rerunning_a_cell_replaces_its_task(shell, capsys):
    run_cells(shell, ["%%osmo task a\nprint(1)\n", "%%osmo task a --shell\necho 2\n"])
    capsys.readouterr()
    shell.run_line_magic("osmo", "export w")
    (task,) = yaml.safe_load(capsys.readouterr().out)["workflow"]["tasks"]
    assert task["command"] == ["sh", "/cells/a.sh"] and task["files"][0]["contents"] == "echo 2\n"


def test_cell_task_mistakes(shell):
    with pytest.raises(UsageError, match="no cell-tasks recorded yet"):
        shell.run_line_magic("osmo", "export w")
    with pytest.raises(UsageError, match="the cell body must be a YAML mapping"):
        shell.run_cell_magic("osmo", "task t --spec", "- just a list\n")
    shell.run_cell_magic("osmo", "task t --inputs nope", "print(1)\n")
    with pytest.raises(UsageError, match="unknown input task 'nope'"):
        shell.run_line_magic("osmo", "run-tasks --name w")


def run_numbered(shell, sources):
    """As a notebook runs cells: each gets its `In [n]`."""
    for src in sources:
        result = shell.run_cell(src, store_history=True)
        assert result.success, (src, result.error_in_exec)


def test_a_spec_error_names_the_cell_and_its_line(shell):
    first = shell.execution_count
    run_numbered(
        shell,
        [
            "%%osmo task prep\nprint(1)\nprint('{{input:zz}}')\n",
            "%%osmo task train --inputs nope --resource big\nprint(2)\n",
        ],
    )
    with pytest.raises(UsageError) as e:
        shell.run_line_magic("osmo", "run-tasks --name w")
    text = str(e.value)
    # not `<spec>:12:16` (the YAML the cells were made into): the cell, its line and column
    assert f"Cell In[{first}] (%%osmo task prep):3:8: {{{{input:zz}}}}" in text
    assert "(add zz to --inputs)" in text
    assert f"Cell In[{first + 1}] (%%osmo task train): --inputs: unknown input task 'nope'" in text
    assert f"Cell In[{first + 1}] (%%osmo task train): --resource: unknown resource" in text
    assert "<spec>" not in text


def test_a_traceback_in_a_task_names_the_cell(shell, wf_name):
    first = shell.execution_count
    run_numbered(
        shell,
        [
            "%%osmo task ok --shell\necho fine\n",
            "%%osmo task boom\nx = 1\n\nraise RuntimeError('bad ' + str(x))\n",
        ],
    )
    shell.user_ns["wfname"] = wf_name
    result = shell.run_cell("wf = %osmo run-tasks --name $wfname")
    assert result.success, result.error_in_exec
    wf = shell.user_ns["wf"]
    assert wf.wait(timeout=60) == "FAILED"
    log = wf.logs("boom")
    # the script's line 3 is the cell's line 4 (the first line of the cell is the magic)
    (line,) = [ln for ln in log if "boom.py" in ln]
    assert line.endswith(f"line 3 [Cell In[{first + 1}], line 4], in <module>"), log
    assert "RuntimeError: bad 1" in log[-1]
    # the monitor's pane shows the same line
    monitor = wf.monitor
    monitor.select("boom")
    assert any(f"[Cell In[{first + 1}], line 4]" in t for t in monitor.log_lines)

"""The host agent: one long-lived process per host (per data directory) that supervises tasks.

It outlives the engine, so an engine restart adopts still-running tasks and collects finished
ones. Modules, by concept:

    protocol.py    the wire format (newline-delimited JSON) and its ops and events; the
                   requests and events themselves are osmo_core/wire.py's
    server.py      Unix-socket server: clients, requests, event broadcast, idle exit
    supervisor.py  the attempts: launch, cancel, release, status, usage, stop
    attempt.py     one attempt's process: pipes into its log, its exit, cancel
    ends.py        ended attempts' records: kept until durable and acknowledged, retried
    holds.py       held attempts: the environment kept after the command ends
    containers.py  tasks with an image: the runtime (docker/podman) and its `run` command
    orphans.py     after a restart: attempts a previous agent left behind, recorded lost
    workdir.py     an attempt's directory: layout, {{output}}/{{input:N}}, files, inputs
    staging.py     data in and out of an attempt: inputs, outputs, checkpoints
    identity.py    task isolation: a uid per OSMO user, handing folders over, file modes
    environment.py what a task's environment never inherits from the agent
    logfile.py     the durable per-attempt log format
    logwriter.py   an attempt's log as written: lines the disk refuses kept, retried
    usage.py       a running command's CPU and memory
    host.py        host facts: capacity, GPUs
    dialhome.py    dial home: the reverse SSH connection to the control plane, kept up
    ssh_server.py  what the agent's SSH server allows: auth, forwards
    ssh_session.py a session channel: hello, exec in a task (pipes or a PTY)
    sftp.py        SFTP rooted at a running attempt's folder
    pod.py         `python -m osmo_core.agent.pod`: the agent of one Kubernetes pod
    __main__.py    `python -m osmo_core.agent`: the single-agent lock, logging, detaching
"""

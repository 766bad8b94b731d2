"""The host agent: one long-lived process per host (per data directory) that supervises tasks.

It outlives the engine, so an engine restart adopts still-running tasks and collects finished
ones. Modules, by concept:

    protocol.py    the wire format (newline-delimited JSON) and its ops and events
    server.py      Unix-socket server: clients, requests, event broadcast, idle exit
    supervisor.py  running attempts: process groups, pipes into logs, exits, cancel, restart scan
    workdir.py     an attempt's directory: layout, {{output}}/{{input:N}}, files, inputs
    identity.py    task isolation: a uid per OSMO user, handing folders over, file modes
    logfile.py     the durable per-attempt log format
    host.py        host facts: capacity, GPUs, container runtime
    ssh.py         dial home: reverse SSH to the control plane; exec in a task, forwards
    __main__.py    `python -m osmo_core.agent`: the single-agent lock, logging, detaching
"""

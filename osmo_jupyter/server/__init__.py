"""The control plane's REST and WebSocket API under `/osmo/api/v1`, one resource per module
(as jupyter_server's `services/<x>/handlers.py`):

    base.py        OsmoHandler / OsmoWebSocket: authentication, osmo_core's errors → JSON body
    routes.py      the one route table: every handler, its URL pattern, its documented operations;
                   and openapi.json's handler, which serves the document built from it
    openapi.py     the OpenAPI document, built from the route table
    info.py        health, version, me                      pools.py     pools, resources
    workflows.py   list, submit, get, cancel, restart, spec tasks.py     get, done, retry
    logs.py        a page of a task's log, log follow        events.py    the events WebSocket
    tokens.py      personal access tokens                   metrics.py   /metrics for admins
    audit.py       `task.access` events of the routes into running tasks:
    exec.py        exec and port-forward                    terminals.py task terminals
    files.py       a task's workdir over SFTP               kernels.py   a task's kernel's ports
    proxy.py       the HTTP proxy to task ports and app links (app_links.py: signed tickets)
"""

"""Interactive access to running tasks, control-plane side (docs/architecture.md, "Interactive
access: the agent dials home").

    keys.py   the control plane's SSH client key and the pinned host keys of agents (TOFU)
    hub.py    Interactive: the reverse-SSH listener agents dial into, one connection per agent,
              and the channels on it: exec (pipes or PTY) and TCP forwards into a task's host
    tunnel.py PortTunnel: local listeners whose connections ride channels opened on demand
    kernel.py RemoteKernel: ipykernel started inside a task (kernel_boot.py runs there),
              its ZMQ ports tunnelled here, its lifetime tied to the task
    spares.py KernelSpares: kernels started ahead in held tasks, so an attach
              takes one instead of waiting for ipykernel's start

The agent side is osmo_core/agent/dialhome.py and ssh_*.py. No Jupyter here: the handlers adapt
this to WebSockets.
"""

from .hub import ExecSession, Interactive

__all__ = ["ExecSession", "Interactive"]

"""`kind: ssh`: hosts reached over SSH (backend.py), each bootstrapped with the agent (host.py)
and driven over one connection (link.py)."""

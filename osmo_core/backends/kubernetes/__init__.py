"""`kind: kubernetes`: each attempt is one pod (backend.py), built by pods.py, followed by
watch.py, optionally driven through an in-pod agent (agent.py)."""

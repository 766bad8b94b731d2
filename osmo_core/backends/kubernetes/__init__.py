"""`kind: kubernetes`: each attempt is one pod. backend.py (the Backend), settings.py (its config
and checks), cluster.py (the API calls), pods.py (manifests), watch.py (the pod watch),
workflow_objects.py (a workflow's Service and PodGroups), records.py (what stays of an attempt),
agent.py and pod_agents.py (the in-pod agent: what a pod carries, the links to the agents)."""

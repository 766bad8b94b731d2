# A Kubernetes backend with the in-pod agent, for `jupyter lab --config=THIS` (or headless):
# pods reach the control plane at osmo.example.internal:7022, and run the agent from
# registry.example/osmo-agent (built with agent-image.Dockerfile next to this file).
c = get_config()  # noqa: F821 - provided by Jupyter when it loads this file

c.OsmoConfig.interactive_host = "0.0.0.0"
c.OsmoConfig.interactive_port = 7022
c.OsmoConfig.backends = {
    "dgx": {
        "kind": "kubernetes",
        "kubeconfig": "~/.kube/config",
        "context": "dgx",
        "namespace": "osmo",
        "agent_image": "registry.example/osmo-agent:0.1.0",
        "agent_dial": "osmo.example.internal:7022",
    }
}
c.OsmoConfig.pools = {
    "train": {
        "backend": "dgx",
        "default_platform": "a100",
        "platforms": {
            "a100": {
                "node_selector": {"nvidia.com/gpu.product": "A100-SXM4-80GB"},
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
            },
            "orin": {"node_selector": {"kubernetes.io/arch": "arm64"}},
        },
    }
}
c.OsmoConfig.default_pool = "train"

"""osmo_jupyter: the Jupyter server extension, magics and widgets (control-plane issue)."""

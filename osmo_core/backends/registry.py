"""Backend registry: kind -> `Backend` class, for the built-in kinds and third-party ones from
the `osmo.backends` entry-point group. Classes are imported on first use, so loading a config
imports only the backends it names (not asyncssh or the Kubernetes client for `osmo --version`)."""

from __future__ import annotations

from importlib import import_module
from typing import Any

from ..errors import ConfigError, Problem
from .base import Backend

_BUILTIN = {
    "local": "osmo_core.backends.local:LocalBackend",
    "kubernetes": "osmo_core.backends.kubernetes.backend:KubernetesBackend",
    "ssh": "osmo_core.backends.ssh.backend:SSHBackend",
}


def backend_class(kind: str, field: str = "OsmoConfig.backends") -> type[Backend]:
    """The class of backends of `kind`; ConfigError (naming `field`) for an unknown kind."""
    target = _BUILTIN.get(kind)
    if target is None:
        from importlib.metadata import entry_points  # only for third-party kinds

        found = [ep for ep in entry_points(group="osmo.backends") if ep.name == kind]
        if not found:
            known = sorted({*_BUILTIN, *(ep.name for ep in entry_points(group="osmo.backends"))})
            raise ConfigError(
                Problem(
                    f"unknown backend kind {kind!r}",
                    field=field,
                    hint=f"known kinds: {', '.join(known)}",
                )
            )
        # a backend class loaded by name (Any)
        return found[0].load()  # type: ignore[no-any-return]
    module, cls = target.split(":")
    # a backend class loaded by name (Any)
    return getattr(import_module(module), cls)  # type: ignore[no-any-return]


def make_backend(name: str, spec: dict[str, Any], data_dir: str) -> Backend:
    config = {k: v for k, v in spec.items() if k != "kind"}
    config.setdefault("root", data_dir)
    return backend_class(spec["kind"], f"OsmoConfig.backends.{name}.kind")(name, config)

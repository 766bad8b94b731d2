"""`/metrics` for the server's admins, in place of jupyter_server's own handler (the gauges it
serves are osmo_jupyter/metrics.py's)."""

from __future__ import annotations

from typing import Any

import prometheus_client
from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import allow_unauthenticated
from jupyter_server.base.handlers import PrometheusMetricsHandler
from prometheus_client import REGISTRY

from .base import ApiError, OsmoHandler


class MetricsHandler(PrometheusMetricsHandler):
    """jupyter_server's `/metrics`, asking the server's authorizer (resource `metrics`) rather
    than admitting anyone signed in; errors are JSON, a 401 carries its challenge."""

    auth_resource = "metrics"

    @allow_unauthenticated  # checked here: 401 (not a login redirect) without credentials
    # tornado awaits a handler method that is a coroutine; the base class's is not one
    async def get(self) -> None:  # type: ignore[override]
        if self.settings["authenticate_prometheus"]:
            user = self.current_user
            if user is None:
                msg = "authentication required: send the server's token"
                raise ApiError(401, msg, "unauthorized")
            if not await ensure_async(self.authorizer.is_authorized(self, user, "read", "metrics")):
                raise ApiError(403, "the metrics are for the server's admins", "forbidden")
        self.set_header("Content-Type", prometheus_client.CONTENT_TYPE_LATEST)
        self.write(prometheus_client.generate_latest(REGISTRY))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        # OsmoHandler's error page on another tornado handler class
        OsmoHandler.write_error(self, status_code, **kwargs)  # type: ignore[arg-type]

"""`WorkflowList`: the server's workflows (what `%osmo list` shows); `refresh()` or its button
re-reads them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import anywidget
import traitlets

from osmo_core.errors import OsmoError

from ..render import COLOURS, FAILED_COLOUR, UNKNOWN_COLOUR, workflows_html, workflows_text

if TYPE_CHECKING:  # the widget is handed a Client; it never makes one
    from ..client import Client


class WorkflowList(anywidget.AnyWidget):
    _esm = Path(__file__).with_name("workflow_list.js")

    rows = traitlets.List(traitlets.Dict()).tag(sync=True)
    error = traitlets.Unicode("").tag(sync=True)
    colours = traitlets.Dict({**COLOURS, "FAILED": FAILED_COLOUR, "UNKNOWN": UNKNOWN_COLOUR}).tag(
        sync=True
    )

    def __init__(
        self, client: Client, *, status: list[str] | None = None, limit: int = 20, **kw: Any
    ):
        super().__init__(**kw)
        self.client = client
        self._status = status
        self._limit = limit
        self.on_msg(lambda _w, content, _b: self.refresh() if content.get("action") else None)
        self.refresh()

    def refresh(self) -> None:
        try:
            self.rows = self.client.list(status=self._status, limit=self._limit)
            self.error = ""
        except OsmoError as e:
            self.error = str(e)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        bundle: Any = super()._repr_mimebundle_(**kwargs) or {}
        data: dict[str, Any] = bundle[0] if isinstance(bundle, tuple) else bundle
        data["text/html"] = workflows_html(self.rows)
        data["text/plain"] = workflows_text(self.rows)
        return bundle

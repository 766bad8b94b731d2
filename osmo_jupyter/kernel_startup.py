"""Run at the start of every IPython kernel this server launches (the extension points
`PYTHONSTARTUP` here): load the `%osmo` magics, then the user's own startup file, if any.

IPython kernels run `PYTHONSTARTUP` (InteractiveShellApp.exec_PYTHONSTARTUP); other kernels
ignore it, and a plain interactive `python` in a terminal finds no IPython and only gets the
user's own file.
"""

import contextlib
import os

# Not IPython, or the package cannot load: never break a kernel's start.
# The magics are registered without marking the extension loaded, so that a notebook's own
# `%load_ext osmo_jupyter` (the quickstart's first cell, for other servers) stays silent
# instead of printing IPython's "already loaded" as if something were wrong.
with contextlib.suppress(Exception):
    import osmo_jupyter

    # get_ipython is a builtin inside IPython
    osmo_jupyter.load_ipython_extension(get_ipython())  # type: ignore[name-defined]  # noqa: F821

_previous = os.environ.get("OSMO_USER_PYTHONSTARTUP")
if _previous and os.path.isfile(_previous):
    with open(_previous, encoding="utf-8") as _f:
        exec(compile(_f.read(), _previous, "exec"))

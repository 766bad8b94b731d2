"""`python -m osmo_jupyter` (and `osmo server`): the headless server, as `jupyter osmo`."""

from .app import main

main()

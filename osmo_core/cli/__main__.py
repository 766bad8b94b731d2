"""`python -m osmo_core.cli` is `osmo`."""

import sys

from . import main

sys.exit(main())

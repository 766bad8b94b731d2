"""Where tasks run: `base.Backend` (the interface), `registry` (kind -> class, built-ins and the
`osmo.backends` entry-point group), `local`, and the `ssh` and `kubernetes` packages."""

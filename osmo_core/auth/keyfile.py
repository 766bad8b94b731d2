"""Keys this server makes for itself: 256 random bits in a 0600 file of its data dir, made on
first use (`session.key` signs session JWTs, `secrets.key` seals users' credentials)."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

KEY_BYTES = 32


def load_key(path: Path) -> bytes:
    """The key in `path`, made once: O_EXCL so two servers starting together agree on one.
    ValueError when the file holds fewer than 32 bytes (truncated: never silently replaced)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(KEY_BYTES))
    key = path.read_bytes()
    if len(key) < KEY_BYTES:
        raise ValueError(f"the key {path} is shorter than {KEY_BYTES} bytes")
    return key[:KEY_BYTES]

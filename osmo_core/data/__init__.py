"""The data layer: storage URLs (fsspec) and content-addressed datasets."""

from __future__ import annotations

from .datasets import DatasetStore
from .refs import parse_ref, validate_name, validate_path
from .results import (
    DatasetInfo,
    DatasetSummary,
    DiffResult,
    FileEntry,
    GcStats,
    TransferStats,
    VersionInfo,
)
from .storage import StorageError, open_store, redact

__all__ = [
    "DatasetInfo",
    "DatasetStore",
    "DatasetSummary",
    "DiffResult",
    "FileEntry",
    "GcStats",
    "StorageError",
    "TransferStats",
    "VersionInfo",
    "open_store",
    "parse_ref",
    "redact",
    "validate_name",
    "validate_path",
]

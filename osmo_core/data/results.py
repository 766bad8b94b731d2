"""What dataset operations answer: a manifest's file entries, transfer counts, versions,
listings, diffs and gc counts, each with `to_dict()` for JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class FileEntry:
    sha256: str
    size: int
    mode: int


@dataclass
class TransferStats:
    """What one upload or download moved; `transferred_bytes` is what crossed the wire."""

    files: int = 0
    transferred_files: int = 0
    transferred_bytes: int = 0
    skipped_files: int = 0
    skipped_bytes: int = 0
    seconds: float = 0.0

    @property
    def total_bytes(self) -> int:
        return self.transferred_bytes + self.skipped_bytes

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total_bytes": self.total_bytes}


@dataclass
class VersionInfo:
    name: str
    version: int
    files: int
    size: int
    created: str
    tags: list[str] = field(default_factory=list)
    stats: TransferStats | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["stats"] = self.stats.to_dict() if self.stats else None
        return d


@dataclass
class DatasetSummary:
    name: str
    versions: int
    latest: int | None
    tags: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DatasetInfo:
    name: str
    versions: list[VersionInfo]
    tags: dict[str, int]

    @property
    def latest(self) -> int | None:
        return self.versions[-1].version if self.versions else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "latest": self.latest,
            "tags": self.tags,
            "versions": [v.to_dict() for v in self.versions],
        }


@dataclass
class DiffResult:
    a: str
    b: str
    added: list[str]
    removed: list[str]
    changed: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GcStats:
    blobs_removed: int = 0
    bytes_removed: int = 0
    blobs_kept: int = 0
    blobs_too_young: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

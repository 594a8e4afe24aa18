"""Domain objects of Creator Studio: generated files, projects and what happened while generating."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

ProjectStatus = Literal["generating", "complete", "failed", "interrupted"]
FINAL: frozenset[str] = frozenset({"complete", "failed", "interrupted"})


@dataclass(frozen=True, slots=True)
class GeneratedFile:
    """One file of a project. `path` is relative, POSIX, normalized and checked (see paths.py)."""

    path: str
    language: str  # a lower-case name such as "python", "tsx", "css"; "text" when unknown
    content: str

    @property
    def size(self) -> int:
        return len(self.content.encode("utf-8"))


@dataclass(frozen=True, slots=True)
class Skipped:
    """Something in the model's output that did not become a file, and why (shown to the user)."""

    path: str | None  # the path as the model wrote it, when it wrote one
    reason: str


@dataclass(frozen=True, slots=True)
class FileLimits:
    """Bounds on what one generation may produce."""

    max_files: int = 100
    max_file_bytes: int = 256_000
    max_total_bytes: int = 2_000_000


@dataclass
class ParseResult:
    files: list[GeneratedFile] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


@dataclass
class Project:
    """A generation: stored (status `generating`) before any model is called, then finished."""

    id: str
    name: str
    description: str
    framework: str
    target_type: str
    model_requested: str | None  # what the caller named (None: the active model)
    status: ProjectStatus
    created_at: datetime
    files: list[GeneratedFile] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    model_used: str | None = None
    model_name: str | None = None  # the display name of `model_used` ("My Gemma 2B")
    latency_ms: float | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)  # router Attempt.as_dict()
    error: str | None = None
    raw_text: str = ""  # everything the model wrote (kept when parsing leaves parts out)
    finished_at: datetime | None = None
    file_count: int = 0  # len(files) when loaded; set on history items, which carry no files

    @property
    def finished(self) -> bool:
        return self.status in FINAL


@dataclass
class ProjectPage:
    items: list[Project]  # without files' content or raw text (history)
    total: int
    limit: int
    offset: int

"""A catalog overlay: models added, changed or retired since the packaged catalog, kept in a JSON file.

`workers-ai-emulator catalog sync` writes one from the real API (`models/search` and every
`models/schema`); `serve` lays it over the packaged catalog, plus the models declared with
`--extra-model NAME=TASK`. A server watches the file: a model a sync adds answers without a restart.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from emulator.catalog.models import (
    TASK_SCHEMA_DONORS,
    Catalog,
    Model,
    Task,
    _properties,
    borrowing,
    load_catalog,
)

OVERLAY_FILE = "catalog-overlay.json"
CHECK_SECONDS = 1.0  # a running server looks at the overlay file at most this often


@dataclass
class Overlay:
    """`models`: full records (with `schema`) to add or replace; `removed`: names to stop serving."""

    models: list[dict[str, Any]] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    synced_from: str = ""
    synced_at: str = ""

    def to_json(self) -> bytes:
        doc = {
            "synced_from": self.synced_from,
            "synced_at": self.synced_at,
            "removed": sorted(self.removed),
            "models": sorted(self.models, key=lambda r: r["name"]),
        }
        return orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"

    @classmethod
    def read(cls, path: Path) -> Overlay:
        doc = orjson.loads(path.read_bytes())
        return cls(
            models=list(doc.get("models", [])),
            removed=list(doc.get("removed", [])),
            synced_from=doc.get("synced_from", ""),
            synced_at=doc.get("synced_at", ""),
        )


def _normal_task(text: str) -> str:
    return " ".join(text.replace("-", " ").replace("_", " ").lower().split())


def parse_extra_model(spec: str) -> tuple[str, str]:
    """`NAME=TASK` as given to --extra-model (TASK as the catalog names it, or `text-generation`)."""
    name, sep, task = spec.partition("=")
    if not sep or not name.strip() or not task.strip():
        raise ValueError(f"--extra-model takes NAME=TASK (e.g. @cf/acme/chat-1=text-generation): {spec!r}")
    return name.strip(), task.strip()


def extra_model(catalog: Catalog, name: str, task: str) -> Model:
    """A model declared by task: the record and schema of the task's typical model (the one that lends
    its schema to the task's schema-less models, else the first by name)."""
    wanted = _normal_task(task)
    siblings = sorted(
        (m for m in catalog if _normal_task(m.task.name) == wanted and m.published),
        key=lambda m: (m.name != TASK_SCHEMA_DONORS.get(m.task.name), m.name),
    )
    if not siblings:
        known = ", ".join(sorted(catalog.tasks))
        raise ValueError(f"--extra-model {name}={task}: no task {task!r}; known tasks: {known}")
    sibling = siblings[0]
    description = f"Declared with --extra-model ({sibling.task.name}); schema of {sibling.name}."
    return borrowing(sibling, name, description)


def model_from_record(record: dict[str, Any]) -> Model:
    task = Task(**{k: record["task"].get(k, "") for k in ("id", "name", "description")})
    return Model(record["name"], task, record, record.get("schema") or {}, properties=_properties(record))


def overlaid(base: Catalog, overlay: Overlay | None, extras: list[tuple[str, str]]) -> Catalog:
    models = {m.name: m for m in base}
    if overlay is not None:
        for name in overlay.removed:
            models.pop(name, None)
        for record in overlay.models:
            models[record["name"]] = model_from_record(record)
    merged = Catalog(list(models.values()))
    for name, task in extras:
        models[name] = extra_model(merged, name, task)
    return Catalog(list(models.values()))


class LiveCatalog(Catalog):
    """The catalog a server answers from: packaged + overlay file + --extra-model, re-read when the
    overlay file changes (so `catalog sync` takes effect on a running server)."""

    def __init__(self, overlay_path: Path | None, extras: list[tuple[str, str]]) -> None:
        # Not Catalog.__init__: every lookup goes to the current merged catalog.
        self.overlay_path = overlay_path
        self.extras = extras
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._checked = 0.0
        self._current = self._build()

    def _file_stamp(self) -> tuple[int, int] | None:
        if self.overlay_path is None:
            return None
        try:
            stat = self.overlay_path.stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def _build(self) -> Catalog:
        self._stamp = self._file_stamp()
        overlay = Overlay.read(self.overlay_path) if self._stamp is not None and self.overlay_path else None
        return overlaid(load_catalog(), overlay, self.extras)

    @property
    def current(self) -> Catalog:
        now = time.monotonic()
        if self.overlay_path is not None and now - self._checked >= CHECK_SECONDS:
            self._checked = now
            if self._file_stamp() != self._stamp:
                # A half-written or broken file: keep serving the last good catalog.
                with self._lock, contextlib.suppress(OSError, ValueError, KeyError):
                    self._current = self._build()
        return self._current

    # The Catalog interface -------------------------------------------------------------------
    @property
    def models(self) -> dict[str, Model]:  # type: ignore[override]
        return self.current.models

    @property
    def tasks(self) -> dict[str, Task]:  # type: ignore[override]
        return self.current.tasks

    def __len__(self) -> int:
        return len(self.current)

    def __iter__(self) -> Iterator[Model]:
        return iter(self.current)

    def get(self, name: str) -> Model | None:
        return self.current.get(name)

    def authors(self) -> list[str]:
        return self.current.authors()

    def by_task(self, task_name: str) -> list[Model]:
        return self.current.by_task(task_name)

"""`catalog sync`: read the real catalog (`models/search`, then every `models/schema`) and write the
overlay that brings the packaged catalog up to date; say what was added, removed and changed."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from emulator.catalog.models import Catalog
from emulator.catalog.overlay import Overlay

PER_PAGE = 100
SCHEMA_FETCHERS = 8


class SyncError(Exception):
    """The real API refused or could not be reached; the message says which call and why."""


@dataclass
class SyncResult:
    overlay: Overlay
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)

    def report(self, path: Path) -> str:
        lines = [f"catalog overlay written to {path}: {len(self.added)} added, {len(self.removed)} removed, "
                 f"{len(self.changed)} changed"]
        for sign, names in (("+", self.added), ("-", self.removed), ("~", self.changed)):
            lines += [f"  {sign} {name}" for name in names]
        return "\n".join(lines)


class CatalogClient:
    """The two catalog endpoints of the real API, with the caller's token."""

    def __init__(self, upstream: str, account_id: str, token: str, timeout: float = 60.0) -> None:
        self.base = f"{upstream.rstrip('/')}/client/v4/accounts/{account_id}/ai/models"
        self.token = token
        self.timeout = timeout

    def _get(self, path: str, query: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.base}/{path}?{urllib.parse.urlencode(query)}"
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                doc: dict[str, Any] = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            body = exc.read()[:500].decode("utf-8", "replace")
            raise SyncError(f"GET {url} answered {exc.code}: {body}") from None
        except (OSError, ValueError) as exc:
            raise SyncError(f"GET {url} failed: {exc}") from None
        if not doc.get("success", True):
            raise SyncError(f"GET {url}: {doc.get('errors')}")
        return doc

    def search(self) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        page = 1
        while True:
            doc = self._get("search", {"per_page": PER_PAGE, "page": page})
            batch = doc.get("result") or []
            records += batch
            info = doc.get("result_info") or {}
            total = info.get("total_count")
            if not batch or len(batch) < PER_PAGE or (total is not None and len(records) >= total):
                return records
            page += 1

    def schema(self, name: str) -> dict[str, Any]:
        result = self._get("schema", {"model": name}).get("result")
        return result if isinstance(result, dict) else {}


def _comparable(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in ("id", "created_at")}


def sync(client: CatalogClient, packaged: Catalog, upstream: str) -> SyncResult:
    """The overlay that turns `packaged` into the real catalog (unpublished emulator models stay)."""
    listed = client.search()
    with ThreadPoolExecutor(SCHEMA_FETCHERS) as pool:
        schemas = list(pool.map(client.schema, [r["name"] for r in listed]))
    overlay = Overlay(synced_from=upstream, synced_at=datetime.now(UTC).isoformat(timespec="seconds"))
    result = SyncResult(overlay)
    real_names = set()
    for record, schema in zip(listed, schemas, strict=True):
        name = record["name"]
        real_names.add(name)
        full = {**record, "schema": schema}
        known = packaged.get(name)
        if known is None:
            result.added.append(name)
        elif _comparable(known.listing()) != _comparable(record) or (schema and schema != known.schema):
            result.changed.append(name)
        else:
            continue
        overlay.models.append(full)
    result.removed = sorted(m.name for m in packaged if m.published and m.name not in real_names)
    overlay.removed = list(result.removed)
    result.added.sort()
    result.changed.sort()
    return result

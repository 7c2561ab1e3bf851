"""Fine-tunes of each account, kept in the data directory: an SQLite index and the adapter files.

`<data_dir>/finetunes.sqlite3` holds one row per fine-tune (names are unique per account, which the
index enforces even across worker processes); the uploaded adapter files live under
`<data_dir>/finetunes/<account>/<id>/`, written to a temporary name and renamed into place, so a
file that exists is a complete upload.
"""

from __future__ import annotations

import builtins
import sqlite3
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel

from emulator.finetunes.assets import REQUIRED_ASSETS

# Cloudflare's public adapters (https://developers.cloudflare.com/workers-ai/features/fine-tunes/public-loras/):
# the `cf-public-` prefix is reserved, and each works with the two Mistral models the page lists.
PUBLIC_PREFIX = "cf-public-"
PUBLIC_MODELS = ("@cf/mistral/mistral-7b-instruct-v0.1", "@hf/mistral/mistral-7b-instruct-v0.2")
PUBLIC_ADAPTERS = {
    "cf-public-magicoder": "Coding tasks in multiple languages",
    "cf-public-jigsaw-classification": "Toxic comment classification",
    "cf-public-cnn-summarization": "Article summarization",
}
# The listing's ids and dates are not documented: stable values derived from the names (emulator's choice).
PUBLIC_CREATED = "2024-04-02T00:00:00.000Z"
PUBLIC_NAMESPACE = uuid.UUID("6f1d3a1e-6b0c-4c7e-9a51-2b8f6c0d4e11")


class Finetune(BaseModel):
    """One fine-tune as the API lists it (cloudflare-python `types/ai/finetune_create_response.py`)."""

    id: str
    name: str
    description: str | None = None
    model: str
    public: bool = False
    created_at: str
    modified_at: str

    def listing(self) -> dict[str, object]:
        """`GET finetunes` rows carry no `public` (`finetune_list_response.py`)."""
        return self.model_dump(exclude={"public"})


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def public_finetunes() -> list[Finetune]:
    rows = []
    for name, description in PUBLIC_ADAPTERS.items():
        rows.append(Finetune(id=str(uuid.uuid5(PUBLIC_NAMESPACE, name)), name=name, description=description,
                             model=PUBLIC_MODELS[0], public=True, created_at=PUBLIC_CREATED,
                             modified_at=PUBLIC_CREATED))
    return rows


class NameTaken(Exception):
    """Another fine-tune of the account already has this name."""


class FinetuneStore:
    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "finetunes"
        self._lock = threading.Lock()
        self._db = sqlite3.connect(data_dir / "finetunes.sqlite3", check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS finetunes (account TEXT NOT NULL, id TEXT NOT NULL,"
            " name TEXT NOT NULL, description TEXT, model TEXT NOT NULL, public INTEGER NOT NULL,"
            " created_at TEXT NOT NULL, modified_at TEXT NOT NULL,"
            " PRIMARY KEY (account, id), UNIQUE (account, name))")
        self._db.commit()

    def close(self) -> None:
        self._db.close()

    def create(self, account: str, *, model: str, name: str, description: str | None, public: bool
               ) -> Finetune:
        now = _now()
        finetune = Finetune(id=str(uuid.uuid4()), name=name, description=description, model=model,
                            public=public, created_at=now, modified_at=now)
        with self._lock:
            try:
                self._db.execute("INSERT INTO finetunes VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                 (account, finetune.id, name, description, model, int(public), now, now))
                self._db.commit()
            except sqlite3.IntegrityError:
                self._db.rollback()
                raise NameTaken(name) from None
        return finetune

    def count(self, account: str) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM finetunes WHERE account = ?",
                                        (account,)).fetchone()[0])

    def list(self, account: str) -> list[Finetune]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM finetunes WHERE account = ? ORDER BY created_at, id",
                                    (account,)).fetchall()
        return [_row(r) for r in rows]

    def find(self, account: str, id_or_name: str) -> Finetune | None:
        """By id or by name, as the assets endpoint and `lora` both accept either."""
        with self._lock:
            row = self._db.execute("SELECT * FROM finetunes WHERE account = ? AND (id = ? OR name = ?)"
                                   " ORDER BY id = ? DESC LIMIT 1",
                                   (account, id_or_name, id_or_name, id_or_name)).fetchone()
        return _row(row) if row else None

    def touch(self, account: str, finetune_id: str) -> None:
        with self._lock:
            self._db.execute("UPDATE finetunes SET modified_at = ? WHERE account = ? AND id = ?",
                             (_now(), account, finetune_id))
            self._db.commit()

    def asset_dir(self, account: str, finetune_id: str) -> Path:
        return self.root / account / finetune_id

    def asset_path(self, account: str, finetune_id: str, file_name: str) -> Path:
        return self.asset_dir(account, finetune_id) / file_name

    def has_asset(self, account: str, finetune_id: str, file_name: str) -> bool:
        return self.asset_path(account, finetune_id, file_name).is_file()

    def missing_assets(self, account: str, finetune_id: str) -> builtins.list[str]:
        return [name for name in REQUIRED_ASSETS if not self.has_asset(account, finetune_id, name)]


def _row(row: tuple[object, ...]) -> Finetune:
    _, ident, name, description, model, public, created, modified = row
    return Finetune(id=str(ident), name=str(name), description=description if description is None
                    else str(description), model=str(model), public=bool(public), created_at=str(created),
                    modified_at=str(modified))

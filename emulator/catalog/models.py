"""Catalog records (`Model`, `Task`) and the `Catalog` that loads them from `catalog/data/*.json`."""

from __future__ import annotations

import functools
import hashlib
import uuid
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import orjson

from emulator.validation import CompiledSchema, compile_schema

# Task-level schemas used where a catalog entry has an empty or missing schema (issue: "Catalog
# entries with an empty or missing schema get their task's common schema"): the donor is a
# well-formed model of the same task.
TASK_SCHEMA_DONORS: dict[str, str] = {
    "Text Generation": "@cf/meta/llama-3.1-8b-instruct",
    "Text Embeddings": "@cf/baai/bge-base-en-v1.5",
}
# Frontier models whose catalog copy holds only the header (no schema) take the OpenAI-style schema of
# their family.
FRONTIER_SCHEMA_DONOR = "@cf/moonshotai/kimi-k2.6"
EXTRA_MODELS_FILE = "_extra_models.json"


def _declared_properties(schema: Any) -> set[str]:
    names: set[str] = set()
    if isinstance(schema, dict):
        properties = schema.get("properties")
        if isinstance(properties, dict):
            names |= properties.keys()
        for key in ("oneOf", "anyOf", "allOf"):
            for branch in schema.get(key) or []:
                names |= _declared_properties(branch)
    return names


@dataclass(frozen=True, slots=True)
class Task:
    id: str
    name: str
    description: str

    def record(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name, "description": self.description}


@dataclass(slots=True)
class Model:
    """One catalog entry; `record` is the JSON object Cloudflare serves (key order kept)."""

    name: str
    task: Task
    record: dict[str, Any]
    schema: dict[str, Any]
    published: bool = True  # False for the guide's models that the published catalog lacks
    schema_inherited_from: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    _input_validator: CompiledSchema | None = None
    _output_validator: CompiledSchema | None = None
    _input_properties: frozenset[str] | None = None

    @property
    def author(self) -> str:
        return self.name.split("/")[1] if self.name.count("/") >= 2 else ""

    @property
    def input_schema(self) -> dict[str, Any]:
        return self.schema.get("input") or {}

    @property
    def output_schema(self) -> dict[str, Any]:
        return self.schema.get("output") or {}

    @property
    def input_validator(self) -> CompiledSchema:
        # Compiled on first use and kept: start-up stays fast, requests never recompile.
        if self._input_validator is None:
            self._input_validator = compile_schema(self.input_schema)
        return self._input_validator

    @property
    def input_properties(self) -> frozenset[str]:
        """Every property name some branch of the input schema declares (`properties` of the schema
        and of its oneOf/anyOf/allOf branches, at any depth), worked out on first use and kept."""
        if self._input_properties is None:
            self._input_properties = frozenset(_declared_properties(self.input_schema))
        return self._input_properties

    @property
    def output_validator(self) -> CompiledSchema:
        if self._output_validator is None:
            self._output_validator = compile_schema(self.output_schema)
        return self._output_validator

    def prop(self, key: str, default: Any = None) -> Any:
        return self.properties.get(key, default)

    def flag(self, key: str) -> bool:
        return str(self.properties.get(key, "")).lower() == "true"

    @property
    def requires_paid(self) -> bool:
        return self.flag("require_workers_paid")

    @property
    def supports_batch(self) -> bool:
        return self.flag("async_queue")

    @property
    def beta(self) -> bool:
        return self.flag("beta")

    @property
    def deprecated(self) -> bool:
        return bool(self.record.get("deprecated")) or "planned_deprecation_date" in self.properties

    @property
    def source(self) -> int:
        return int(self.record.get("source", 1 if self.name.startswith("@cf/") else 2))

    def listing(self) -> dict[str, Any]:
        """The `models/search` record: the catalog JSON minus `schema`."""
        return {k: v for k, v in self.record.items() if k != "schema"}

    def output_content_types(self) -> list[str]:
        """Content types the output schema declares (binary branches and JSON)."""
        out = self.output_schema
        branches = out.get("oneOf") or [out]
        types = [str(b["contentType"]) for b in branches if isinstance(b, dict) and b.get("contentType")]
        if out.get("contentType") and out["contentType"] not in types:
            types.insert(0, out["contentType"])
        return types or ["application/json"]


class Catalog:
    """All models by name, plus task and author indexes; built once at start-up."""

    def __init__(self, models: list[Model]) -> None:
        self.models: dict[str, Model] = {m.name: m for m in models}
        self.tasks: dict[str, Task] = {}
        for m in models:
            self.tasks.setdefault(m.task.name, m.task)
        self._lower = {name.lower(): m for name, m in self.models.items()}

    def __len__(self) -> int:
        return len(self.models)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.models.values())

    def get(self, name: str) -> Model | None:
        return self.models.get(name) or self._lower.get(name.lower())

    def authors(self) -> list[str]:
        return sorted({m.author for m in self.models.values() if m.author})

    def by_task(self, task_name: str) -> list[Model]:
        return [m for m in self.models.values() if m.task.name == task_name]


def borrowing(sibling: Model, name: str, description: str, *properties: dict[str, Any]) -> Model:
    """A model outside the published catalog that takes `sibling`'s task and schema: its record is the
    sibling's, with its own name, a stable id derived from the name, and `properties` added."""
    record = dict(sibling.record)
    record["id"] = str(uuid.UUID(bytes=hashlib.md5(name.encode()).digest()))
    record["name"] = name
    record["description"] = description
    if properties:
        record["properties"] = [*record.get("properties", []), *properties]
    return Model(name, sibling.task, record, sibling.schema, published=False,
                 schema_inherited_from=sibling.name, properties=_properties(record))


def _properties(record: dict[str, Any]) -> dict[str, Any]:
    return {p["property_id"]: p.get("value") for p in record.get("properties", []) if "property_id" in p}


def _read_data_files() -> list[tuple[str, Any]]:
    data_dir = resources.files("emulator.catalog") / "data"
    return [
        (f.name, orjson.loads(f.read_bytes()))
        for f in sorted(data_dir.iterdir(), key=lambda p: p.name)
        if f.name.endswith(".json")
    ]


@functools.cache
def load_catalog() -> Catalog:
    """Load every catalog file once per process (the result is shared and read-only)."""
    files = _read_data_files()
    extras: list[dict[str, Any]] = []
    models: dict[str, Model] = {}
    for filename, record in files:
        if filename == EXTRA_MODELS_FILE:
            extras = record
            continue
        task = Task(**record["task"])
        schema = record.get("schema") or {}
        models.setdefault(
            record["name"], Model(record["name"], task, record, schema, properties=_properties(record))
        )
    for model in list(models.values()):
        if not model.schema.get("input"):
            frontier = (
                model.requires_paid or "reasoning_effort" in model.properties or "vision" in model.properties
            )
            donor_name = FRONTIER_SCHEMA_DONOR if frontier else TASK_SCHEMA_DONORS.get(model.task.name, "")
            donor = models.get(donor_name)
            if donor is not None:
                model.schema = donor.schema
                model.schema_inherited_from = donor.name
    for extra in extras:
        models[extra["name"]] = borrowing(
            models[extra["sibling"]], extra["name"], extra["description"],
            {"property_id": "info", "value": "not in the published catalog (emulator)"})
    return Catalog(list(models.values()))

"""The model catalog as typed records: loaded once from package data, searched and paged like Cloudflare's."""

from emulator.catalog.models import Catalog, Model, Task, load_catalog

__all__ = ["Catalog", "Model", "Task", "load_catalog"]

"""What a request path routes to: its `Kind` of route, and the `Route` (kind, account, model, gateway)
the router (server/router.py) makes of it."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

ACCOUNT_ID = re.compile(r"^[0-9a-f]{32}$")
API_PREFIX = "/client/v4"


class Kind(enum.StrEnum):
    RUN = "run"
    CHAT = "chat"
    EMBEDDINGS = "embeddings"
    RESPONSES = "responses"
    MODELS_SEARCH = "models_search"
    MODELS_SCHEMA = "models_schema"
    TASKS_SEARCH = "tasks_search"
    AUTHORS_SEARCH = "authors_search"
    GRAPHQL = "graphql"
    COMPAT_CHAT = "compat_chat"
    COMPAT_EMBEDDINGS = "compat_embeddings"
    BINDING = "binding"  # env.AI through Miniflare's remote proxy (server/binding.py)
    FINETUNES_LIST = "finetunes_list"
    FINETUNES_CREATE = "finetunes_create"
    FINETUNE_ASSETS = "finetune_assets"
    FINETUNES_PUBLIC = "finetunes_public"
    TOMARKDOWN_SUPPORTED = "tomarkdown_supported"
    TOMARKDOWN = "tomarkdown"
    REALTIME = "realtime"  # a WebSocket upgrade of run/{model} (server/realtime.py)


@dataclass(frozen=True, slots=True)
class Route:
    kind: Kind
    account_id: str = ""
    model: str | None = None
    gateway_id: str | None = None
    doubled_slash: bool = False
    resource: str | None = None  # the fine-tune id or name of `finetunes/{id}/finetune-assets`

    @property
    def via_gateway(self) -> bool:
        return self.gateway_id is not None

"""A small synchronous client of a running emulator's control plane (`/__emulator__/`), stdlib only."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime
from typing import Any


class EmulatorError(RuntimeError):
    """The control plane answered with an error status (bad stub, wrong token, unavailable mode…)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class EmulatorClient:
    """Drive an emulator from Python: reset, stubs, faults, clock, mode, request log and usage."""

    def __init__(self, base_url: str, token: str | None = None, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def _call(self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None) -> Any:
        url = f"{self.base_url}/__emulator__/{path}"
        params = {k: str(v) for k, v in (query or {}).items() if v is not None}
        if params:
            url += "?" + urllib.parse.urlencode(params)
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                message = json.loads(raw).get("error") or raw.decode()
            except (ValueError, AttributeError):
                message = raw.decode("utf-8", "replace")
            raise EmulatorError(exc.code, str(message)) from None

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "health")
        return result

    def reset(self) -> None:
        """Clear the ledger, the request log, stubs and faults, and put the clock back on real time."""
        self._call("POST", "reset")

    def requests(
        self,
        *,
        model: str | None = None,
        surface: str | None = None,
        status: str | int | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        query = {"model": model, "surface": surface, "status": status, "limit": limit}
        entries: list[dict[str, Any]] = self._call("GET", "requests", query=query)["requests"]
        return entries

    def usage(self, day: str | None = None, account: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "usage", query={"day": day, "account": account})
        return result

    def set_clock(
        self, now: datetime | str | None = None, *, advance_seconds: float | None = None, real: bool = False
    ) -> dict[str, Any]:
        """Freeze the ledger's clock at `now`, move it by `advance_seconds`, or go back to real time."""
        if real:
            body: dict[str, Any] = {"real": True}
        elif advance_seconds is not None:
            body = {"advance_seconds": advance_seconds}
        elif now is not None:
            body = {"now": now.isoformat() if isinstance(now, datetime) else now}
        else:
            raise ValueError("give now, advance_seconds or real=True")
        result: dict[str, Any] = self._call("POST", "clock", body)
        return result

    def set_mode(
        self,
        mode: str,
        *,
        cassette: str | None = None,
        cassette_dir: str | None = None,
        ignore_fields: list[str] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"mode": mode}
        if cassette is not None:
            body["cassette"] = cassette
        if cassette_dir is not None:
            body["cassette_dir"] = cassette_dir
        if ignore_fields is not None:
            body["ignore_fields"] = ignore_fields
        result: dict[str, Any] = self._call("POST", "mode", body)
        return result

    def stub(self, **spec: Any) -> dict[str, Any]:
        """Add a stub: match `model`/`surface`/`body`/`prompt`; answer `text`/`result`/`error`/`results`."""
        result: dict[str, Any] = self._call("POST", "stubs", spec)
        return result

    def stubs(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self._call("GET", "stubs")["stubs"]
        return items

    def delete_stub(self, key: str) -> None:
        self._call("DELETE", f"stubs/{urllib.parse.quote(key, safe='')}")

    def clear_stubs(self) -> None:
        self._call("DELETE", "stubs")

    def fault(self, kind: str | int | None = None, **spec: Any) -> dict[str, Any]:
        """Add a fault: `kind` (capacity, timeout, upstream, server_error, daily_limit, latency,
        slow_stream, cut_stream, or a Cloudflare code), a scope (`model`, …) and a trigger
        (`nth`, `every`, `probability` + `seed`)."""
        if kind is not None:
            spec["kind"] = kind
        result: dict[str, Any] = self._call("POST", "faults", spec)
        return result

    def faults(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self._call("GET", "faults")["faults"]
        return items

    def delete_fault(self, key: str) -> None:
        self._call("DELETE", f"faults/{urllib.parse.quote(key, safe='')}")

    def clear_faults(self) -> None:
        self._call("DELETE", "faults")

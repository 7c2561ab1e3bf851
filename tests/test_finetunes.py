"""Fine-tunes and LoRA over real HTTP: create/list/assets/public, persistence, checks, `lora` on run/ and
v1/chat/completions, and the cloudflare SDK's `ai.finetunes` calls unmodified."""

from __future__ import annotations

import asyncio
import json
import struct
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cloudflare import Cloudflare

from emulator.accounting.pricing import round_neurons
from emulator.call import Usage
from tests.conftest import ACCOUNT, AUTH, Emulator, ServerFactory

LORA_MODEL = "@cf/mistral/mistral-7b-instruct-v0.2-lora"
NO_LORA_MODEL = "@cf/meta/llama-3.1-8b-instruct"


def adapter_config(rank: int = 8, model_type: str = "mistral") -> bytes:
    return json.dumps({"peft_type": "LORA", "r": rank, "lora_alpha": 16, "model_type": model_type,
                       "target_modules": ["q_proj", "v_proj"], "task_type": "CAUSAL_LM"}).encode()


def safetensors(rank: int = 8, width: int = 16, *, truncate: int = 0) -> bytes:
    """A real safetensors file (8-byte header length, JSON header, raw little-endian data)."""
    a = rank * width * 4
    header = {"__metadata__": {"format": "pt"},
              "base_model.model.layers.0.q_proj.lora_A.weight": {"dtype": "F32", "shape": [rank, width],
                                                                 "data_offsets": [0, a]},
              "base_model.model.layers.0.q_proj.lora_B.weight": {"dtype": "F32", "shape": [width, rank],
                                                                 "data_offsets": [a, 2 * a]}}
    raw = json.dumps(header).encode()
    data = struct.pack(f"<{2 * rank * width}f", *([0.01] * (2 * rank * width)))
    blob = struct.pack("<Q", len(raw)) + raw + data
    return blob[: len(blob) - truncate] if truncate else blob


async def post_json(emulator: Emulator, path: str, body: Any) -> tuple[int, dict[str, Any]]:
    async with emulator.session.post(f"{emulator.ai}/{path}", json=body, headers=AUTH) as response:
        return response.status, await response.json()


async def get_json(emulator: Emulator, path: str, **params: str) -> tuple[int, dict[str, Any]]:
    async with emulator.session.get(f"{emulator.ai}/{path}", params=params, headers=AUTH) as response:
        return response.status, await response.json()


async def upload(emulator: Emulator, finetune: str, file_name: str, data: bytes
                 ) -> tuple[int, dict[str, Any]]:
    form = aiohttp.FormData()
    form.add_field("file_name", file_name)
    form.add_field("file", data, filename="blob", content_type="application/octet-stream")
    async with emulator.session.post(f"{emulator.ai}/finetunes/{finetune}/finetune-assets", data=form,
                                     headers=AUTH) as response:
        return response.status, await response.json()


async def create(emulator: Emulator, name: str, model: str = LORA_MODEL) -> dict[str, Any]:
    status, body = await post_json(emulator, "finetunes", {"model": model, "name": name, "description": "d"})
    assert status == 200, body
    return body["result"]


async def complete_finetune(emulator: Emulator, name: str, model: str = LORA_MODEL) -> dict[str, Any]:
    finetune = await create(emulator, name, model)
    assert (await upload(emulator, finetune["id"], "adapter_config.json", adapter_config()))[0] == 200
    assert (await upload(emulator, name, "adapter_model.safetensors", safetensors()))[0] == 200
    return finetune


async def test_create_list_and_persist_across_restart(make_emulator: ServerFactory, tmp_path: Path) -> None:
    data_dir = tmp_path / "shared-data"
    first = await make_emulator(data_dir=data_dir)
    made = await create(first, "my-lora")
    assert set(made) == {"id", "name", "description", "model", "public", "created_at", "modified_at"}
    assert made["public"] is False and made["model"] == LORA_MODEL
    other = "fedcba9876543210fedcba9876543210"
    first.account = other
    assert (await get_json(first, "finetunes"))[1]["result"] == []  # per account
    second = await make_emulator(data_dir=data_dir)  # a new server on the same data directory
    status, body = await get_json(second, "finetunes")
    assert status == 200
    assert [row["id"] for row in body["result"]] == [made["id"]]
    assert "public" not in body["result"][0]


@pytest.mark.parametrize("body, code, status", [
    ({"name": "x"}, 5006, 400),
    ({"model": LORA_MODEL}, 5006, 400),
    ({"model": "@cf/nobody/none", "name": "x"}, 5007, 400),
    ({"model": NO_LORA_MODEL, "name": "x"}, 5005, 405),
    ({"model": LORA_MODEL, "name": "cf-public-mine"}, 5006, 400),
    ({"model": LORA_MODEL, "name": 3}, 5006, 400),
])
async def test_create_refusals(emulator: Emulator, body: dict[str, Any], code: int, status: int) -> None:
    got, answer = await post_json(emulator, "finetunes", body)
    assert (got, answer["errors"][0]["code"]) == (status, code), answer


async def test_duplicate_name_and_account_limit(emulator: Emulator) -> None:
    await create(emulator, "dup")
    status, body = await post_json(emulator, "finetunes", {"model": LORA_MODEL, "name": "dup"})
    assert status == 400 and "already exists" in body["errors"][0]["message"]
    for i in range(29):
        await create(emulator, f"n{i}")
    status, body = await post_json(emulator, "finetunes", {"model": LORA_MODEL, "name": "one-too-many"})
    assert status == 400 and "at most 30" in body["errors"][0]["message"]


@pytest.mark.parametrize("file_name, data, needle", [
    ("adapter_config.json", b"{not json", "not valid JSON"),
    ("adapter_config.json", adapter_config(rank=64), "above the supported maximum of 32"),
    ("adapter_config.json", adapter_config(model_type="bert"), "model_type"),
    ("adapter_model.safetensors", b"\x01\x02", "too short"),
    ("adapter_model.safetensors", safetensors(truncate=40), "past the end"),
    ("adapter_model.safetensors", safetensors(rank=48), "rank 48"),
    ("adapter_model.safetensors", struct.pack("<Q", 4) + b"nope", "not valid JSON"),
    ("model.bin", b"x", "file_name must be"),
])
async def test_asset_checks(emulator: Emulator, file_name: str, data: bytes, needle: str) -> None:
    finetune = await create(emulator, "checked")
    status, body = await upload(emulator, finetune["id"], file_name, data)
    assert status == 400, body
    assert needle in body["errors"][0]["message"]
    assert await asyncio.to_thread(lambda: not list(
        (emulator.state.settings.resolved_data_dir() / "finetunes" / ACCOUNT / finetune["id"]).glob("*.*")))


async def test_asset_upload_unknown_finetune_and_reupload(emulator: Emulator) -> None:
    status, body = await upload(emulator, "no-such-finetune", "adapter_config.json", adapter_config())
    assert status == 404 and body["errors"][0]["code"] == 3037
    finetune = await create(emulator, "once")
    assert (await upload(emulator, "once", "adapter_config.json", adapter_config()))[0] == 200
    status, body = await upload(emulator, finetune["id"], "adapter_config.json", adapter_config())
    assert status == 400 and "already uploaded" in body["errors"][0]["message"]


async def test_public_listing_and_paging(emulator: Emulator) -> None:
    status, body = await get_json(emulator, "finetunes/public")
    names = [row["name"] for row in body["result"]]
    assert status == 200 and all(n.startswith("cf-public-") for n in names) and len(names) == 3
    assert all(row["public"] is True for row in body["result"])
    status, body = await get_json(emulator, "finetunes/public", limit="1", offset="1", orderBy="name")
    assert [row["name"] for row in body["result"]] == sorted(names)[1:2]
    status, body = await get_json(emulator, "finetunes/public", limit="-1")
    assert status == 400


async def chat(emulator: Emulator, model: str, **extra: Any) -> tuple[int, dict[str, Any], str]:
    body = {"messages": [{"role": "user", "content": "Hello world"}], "seed": 7, **extra}
    async with emulator.session.post(emulator.run_url(model), json=body, headers=AUTH) as response:
        return response.status, await response.json(), response.headers.get("cf-ai-neurons", "")


async def test_lora_on_run_is_deterministic_differs_and_bills_as_base(emulator: Emulator) -> None:
    finetune = await complete_finetune(emulator, "ready")
    status, base, base_neurons = await chat(emulator, LORA_MODEL)
    assert status == 200
    by_name = await chat(emulator, LORA_MODEL, lora="ready")
    by_id = await chat(emulator, LORA_MODEL, lora=finetune["id"])
    assert by_name[0] == by_id[0] == 200
    assert by_name[1]["result"] == by_id[1]["result"]  # name or id: the same adapter, the same answer
    assert by_name[1]["result"]["response"] != base["result"]["response"]
    usage = by_name[1]["result"]["usage"]
    expected = emulator.state.prices.neurons(
        LORA_MODEL, Usage(input_tokens=usage["prompt_tokens"], output_tokens=usage["completion_tokens"]))
    assert by_name[2] == round_neurons(expected)  # billed as the base model at its price
    assert base_neurons == round_neurons(emulator.state.prices.neurons(LORA_MODEL, Usage(
        input_tokens=base["result"]["usage"]["prompt_tokens"],
        output_tokens=base["result"]["usage"]["completion_tokens"])))


async def test_lora_refusals_on_run(emulator: Emulator) -> None:
    status, body, _ = await chat(emulator, NO_LORA_MODEL, lora="anything")
    assert (status, body["errors"][0]["code"]) == (405, 5005)
    assert body["errors"][0]["message"] == f"The model {NO_LORA_MODEL} does not support LoRa inference"
    status, body, _ = await chat(emulator, LORA_MODEL, lora="missing")
    assert (status, body["errors"][0]["code"]) == (404, 3037)
    assert body["errors"][0]["message"].startswith("AiError: AiError: Finetune missing not found (")
    await create(emulator, "half")
    await upload(emulator, "half", "adapter_config.json", adapter_config())
    status, body, _ = await chat(emulator, LORA_MODEL, lora="half")
    assert (status, body["errors"][0]["code"]) == (400, 3039)
    await complete_finetune(emulator, "gemma-one", "@cf/google/gemma-2b-it-lora")
    status, body, _ = await chat(emulator, LORA_MODEL, lora="gemma-one")
    assert status == 400 and "created for @cf/google/gemma-2b-it-lora" in body["errors"][0]["message"]


async def test_public_lora_on_its_models_only(emulator: Emulator) -> None:
    status, body, _ = await chat(emulator, "@cf/mistral/mistral-7b-instruct-v0.1", lora="cf-public-magicoder")
    assert status == 200 and body["result"]["response"]
    status, body, _ = await chat(emulator, LORA_MODEL, lora="cf-public-magicoder")
    assert (status, body["errors"][0]["code"]) == (404, 3037)


async def test_lora_on_v1_chat_completions(emulator: Emulator) -> None:
    await complete_finetune(emulator, "openai-lora")
    url = f"{emulator.ai}/v1/chat/completions"
    body = {"model": LORA_MODEL, "messages": [{"role": "user", "content": "Hello world"}], "seed": 7}
    async with emulator.session.post(url, json=body, headers=AUTH) as response:
        base = await response.json()
    async with emulator.session.post(url, json={**body, "lora": "openai-lora"}, headers=AUTH) as response:
        assert response.status == 200
        tuned = await response.json()
    assert tuned["choices"][0]["message"]["content"] != base["choices"][0]["message"]["content"]
    async with emulator.session.post(url, json={**body, "model": NO_LORA_MODEL, "lora": "openai-lora"},
                                     headers=AUTH) as response:
        assert response.status == 405
        assert (await response.json())["errors"][0]["code"] == 5005


def _sdk_session(base: str, folder: Path) -> dict[str, Any]:
    client = Cloudflare(api_token="t", base_url=f"{base}/client/v4", max_retries=0)
    created = client.ai.finetunes.create(account_id=ACCOUNT, model=LORA_MODEL, name="sdk-lora",
                                         description="from the SDK")
    config = client.ai.finetunes.assets.create(created.id, account_id=ACCOUNT,
                                               file=(folder / "adapter_config.json").read_bytes(),
                                               file_name="adapter_config.json")
    weights = client.ai.finetunes.assets.create(created.id, account_id=ACCOUNT,
                                                file=(folder / "adapter_model.safetensors").open("rb"),
                                                file_name="adapter_model.safetensors")
    listed = client.ai.finetunes.list(account_id=ACCOUNT)
    public = list(client.ai.finetunes.public.list(account_id=ACCOUNT, limit=2, order_by="name"))
    answer = client.ai.run(LORA_MODEL, account_id=ACCOUNT, prompt="Hello", lora="sdk-lora")
    return {"created": created, "config": config, "weights": weights, "listed": listed, "public": public,
            "answer": answer}


async def test_cloudflare_sdk_finetunes(emulator: Emulator, tmp_path: Path) -> None:
    (tmp_path / "adapter_config.json").write_bytes(adapter_config())
    (tmp_path / "adapter_model.safetensors").write_bytes(safetensors())
    got = await asyncio.to_thread(_sdk_session, emulator.base, tmp_path)
    assert got["created"].name == "sdk-lora" and got["created"].public is False
    assert got["config"].success is True and got["weights"].success is True
    assert [row.name for row in got["listed"]] == ["sdk-lora"]  # type: ignore[attr-defined]
    assert len(got["public"]) == 2 and got["public"][0].name.startswith("cf-public-")
    assert got["answer"]["response"]

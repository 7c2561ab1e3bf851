"""What can be checked of an uploaded LoRA adapter without loading it: the two files' names, sizes,
`adapter_config.json` as JSON with its rank and model type, and the safetensors header.

Limits are the documented ones (https://developers.cloudflare.com/workers-ai/features/fine-tunes/loras/):
rank `r` up to 32, adapter file under 500 MB, files named exactly `adapter_config.json` and
`adapter_model.safetensors`, `model_type` one of `mistral`, `gemma`, `llama`. The wording of the
refusals is the emulator's (Cloudflare does not document it).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

CONFIG = "adapter_config.json"
WEIGHTS = "adapter_model.safetensors"
REQUIRED_ASSETS = (CONFIG, WEIGHTS)
MAX_RANK = 32
MAX_ASSET_BYTES = 500 * 1000 * 1000  # "LoRA adapter file must be < 500MB"
MAX_CONFIG_BYTES = 1024 * 1024
MODEL_TYPES = ("mistral", "gemma", "llama")
# A safetensors header is JSON describing the tensors; the format caps it at 100 MB.
MAX_HEADER_BYTES = 100 * 1000 * 1000
DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2,
               "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}


class AssetError(ValueError):
    """An adapter file that cannot be a working LoRA adapter; the message says why."""


def check_file_name(file_name: str) -> None:
    if file_name not in REQUIRED_ASSETS:
        raise AssetError(f"file_name must be {CONFIG} or {WEIGHTS}, not {file_name!r}")


def check_config(data: bytes) -> dict[str, Any]:
    if len(data) > MAX_CONFIG_BYTES:
        raise AssetError(f"{CONFIG} is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        config = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise AssetError(f"{CONFIG} is not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise AssetError(f"{CONFIG} must be a JSON object")
    rank = config.get("r")
    if rank is not None and (not isinstance(rank, int) or isinstance(rank, bool) or rank < 1):
        raise AssetError(f"{CONFIG}: r must be a positive integer")
    if isinstance(rank, int) and rank > MAX_RANK:
        raise AssetError(f"{CONFIG}: rank r={rank} is above the supported maximum of {MAX_RANK}")
    model_type = config.get("model_type")
    if model_type not in MODEL_TYPES:
        raise AssetError(f"{CONFIG}: model_type must be one of {', '.join(MODEL_TYPES)}"
                         f" (found {model_type!r})")
    return config


def check_safetensors(path: Path) -> int:
    """Validate the header of a safetensors file; returns the LoRA rank its tensors imply (0 if none)."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        prefix = fh.read(8)
        if len(prefix) < 8:
            raise AssetError(f"{WEIGHTS} is too short to be a safetensors file")
        (header_len,) = struct.unpack("<Q", prefix)
        if header_len < 2 or header_len > MAX_HEADER_BYTES or 8 + header_len > size:
            raise AssetError(f"{WEIGHTS}: invalid safetensors header length {header_len}")
        raw = fh.read(header_len)
    try:
        header = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise AssetError(f"{WEIGHTS}: the safetensors header is not valid JSON") from None
    if not isinstance(header, dict):
        raise AssetError(f"{WEIGHTS}: the safetensors header must be a JSON object")
    data_size = size - 8 - header_len
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    if not tensors:
        raise AssetError(f"{WEIGHTS} holds no tensors")
    rank = 0
    for name, info in tensors.items():
        _check_tensor(name, info, data_size)
        shape = info["shape"]
        if len(shape) == 2 and "lora_A" in name:
            rank = max(rank, shape[0])
        elif len(shape) == 2 and "lora_B" in name:
            rank = max(rank, shape[1])
    if rank > MAX_RANK:
        raise AssetError(f"{WEIGHTS}: LoRA rank {rank} is above the supported maximum of {MAX_RANK}")
    return rank


def _check_tensor(name: str, info: Any, data_size: int) -> None:
    if not isinstance(info, dict):
        raise AssetError(f"{WEIGHTS}: tensor {name!r} has no description")
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if dtype not in DTYPE_BYTES:
        raise AssetError(f"{WEIGHTS}: tensor {name!r} has unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise AssetError(f"{WEIGHTS}: tensor {name!r} has an invalid shape")
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(isinstance(o, int) and o >= 0 for o in offsets) or offsets[0] > offsets[1]):
        raise AssetError(f"{WEIGHTS}: tensor {name!r} has invalid data_offsets")
    if offsets[1] > data_size:
        raise AssetError(f"{WEIGHTS}: tensor {name!r} ends past the end of the file")
    count = 1
    for d in shape:
        count *= d
    if offsets[1] - offsets[0] != count * DTYPE_BYTES[dtype]:
        raise AssetError(f"{WEIGHTS}: tensor {name!r} size does not match its shape and dtype")

"""Reading the image of a call (raw body, `{image: [u8]}`, base64 or data URI) for the vision tasks."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from emulator.call import Call
from emulator.errors import CFError, ErrorKind
from emulator.fakes import images


def _decode_string(value: str) -> bytes:
    if value.startswith("data:"):
        value = value.partition(",")[2]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise CFError(ErrorKind.INVALID_BASE64, type="string") from None


# `bytes(list)` of this many numbers or more is built a slice at a time: in one call it holds the GIL
# (~65 ms for 5 million), which would keep the event loop waiting even from a worker thread.
_BYTES_SLICE = 1 << 18


def list_bytes(value: list[Any]) -> bytes:
    """`bytes(value)`, built a slice at a time; TypeError or ValueError as `bytes` raises them."""
    if len(value) <= _BYTES_SLICE:
        return bytes(value)
    return b"".join([bytes(value[i:i + _BYTES_SLICE]) for i in range(0, len(value), _BYTES_SLICE)])


def image_bytes(call: Call, key: str = "image") -> bytes | None:
    """The image bytes of a call, or None when the call carries no image."""
    if call.binary is not None:
        return call.binary.data
    value: Any = call.json_inputs.get(key)
    if value is None:
        return None
    if isinstance(value, list):
        try:
            return list_bytes(value)  # in C: the common form, `[...new Uint8Array(blob)]`
        except (TypeError, ValueError):
            pass  # floats, or values out of range: checked one by one below
        if not all(isinstance(b, (int, float)) and 0 <= b <= 255 for b in value):
            raise CFError(
                ErrorKind.BAD_INPUT,
                detail=f"Error: {key} must be an array of integers between 0 and 255")
        return bytes(int(b) for b in value)
    if isinstance(value, str):
        if value.startswith(("http://", "https://")):
            return None  # a URL the emulator will not fetch (no network): treated as an unseen image
        return _decode_string(value)
    raise CFError(ErrorKind.BAD_INPUT, detail=f"Error: unsupported {key} value")


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) of uploaded image bytes; 5006 when the bytes are not an image."""
    info = images.image_info(data)
    if info is None:
        raise CFError(ErrorKind.BAD_INPUT, detail="Error: input is not a decodable image")
    return info[1], info[2]


def require_image(call: Call, key: str = "image") -> tuple[bytes, int, int]:
    data = image_bytes(call, key)
    if not data:
        raise CFError(ErrorKind.BAD_INPUT, detail=f"Error: required properties at '/' are '{key}'")
    width, height = image_size(data)
    return data, width, height

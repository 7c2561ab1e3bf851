"""The audio encodings of the realtime models' `encoding` query parameter, and which ones the emulator
reads (speech recognition input) or writes (speech output).

G.711 μ-law and A-law are eight bits per sample, companded (ITU-T G.711): decoding and encoding are
the few lines of arithmetic below, on numpy arrays. The catalog declares more encodings (FLAC, Opus,
AMR, Speex, G.729 for nova-3 input; FLAC, Opus, AAC for aura output) that need native codec libraries:
the fakes answer those with a clear 5006 naming what they take. An encoding the catalog does not
declare at all gets the schema's own enum error, as Cloudflare answers it.
"""

from __future__ import annotations

from collections.abc import Callable

import lameenc
import numpy as np

from emulator.catalog import Model
from emulator.errors import CFError, ErrorKind

MULAW_BIAS = 0x84  # decoding, on 16 bits
MULAW_BIAS_14 = 0x21  # encoding, on the top 14 bits
MULAW_CLIP_14 = 8159

# encoding → (int16 little-endian PCM bytes → encoded bytes) for output, and the reverse for input.
Codec = Callable[[bytes], bytes]


def mulaw_decode(data: bytes) -> bytes:
    """8-bit μ-law to 16-bit little-endian PCM (G.711)."""
    u = ~np.frombuffer(data, dtype=np.uint8).astype(np.int32) & 0xFF
    exponent = (u >> 4) & 0x07
    magnitude = ((((u & 0x0F) << 3) + MULAW_BIAS) << exponent) - MULAW_BIAS
    return np.where(u & 0x80, -magnitude, magnitude).astype("<i2").tobytes()


def alaw_decode(data: bytes) -> bytes:
    """8-bit A-law to 16-bit little-endian PCM (G.711)."""
    a = np.frombuffer(data, dtype=np.uint8).astype(np.int32) ^ 0x55
    exponent = (a >> 4) & 0x07
    mantissa = a & 0x0F
    magnitude = np.where(exponent == 0, (mantissa << 4) + 8,
                         ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0))
    return np.where(a & 0x80, magnitude, -magnitude).astype("<i2").tobytes()


def _exponent(magnitude: np.ndarray) -> np.ndarray:
    """The G.711 segment of magnitudes 256 and up: floor(log2(m)) - 7, in 0..7."""
    return np.clip(np.floor(np.log2(np.maximum(magnitude, 1))).astype(np.int32) - 7, 0, 7)


def mulaw_encode(pcm: bytes) -> bytes:
    """16-bit little-endian PCM to 8-bit μ-law (G.711, on the top 14 bits as the reference coder)."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.int32) >> 2
    mask = np.where(samples < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(samples), MULAW_CLIP_14) + MULAW_BIAS_14
    segment = np.maximum(np.floor(np.log2(magnitude)).astype(np.int32) - 5, 0)
    mantissa = (magnitude >> (np.minimum(segment, 7) + 1)) & 0x0F
    code = np.where(segment > 7, 0x7F, (segment << 4) | mantissa)  # past the last segment: the top code
    return (code ^ mask).astype(np.uint8).tobytes()


def alaw_encode(pcm: bytes) -> bytes:
    """16-bit little-endian PCM to 8-bit A-law (G.711)."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.int32)
    sign = np.where(samples >= 0, 0x80, 0)
    magnitude = np.minimum(np.where(samples >= 0, samples, -samples - 1), 32767)
    exponent = np.where(magnitude >= 256, _exponent(magnitude), 0)
    mantissa = np.where(exponent == 0, magnitude >> 4, magnitude >> (exponent + 3)) & 0x0F
    return ((sign | (exponent << 4) | mantissa) ^ 0x55).astype(np.uint8).tobytes()


def mp3_encode(pcm: bytes, sample_rate: int, kbps: int) -> bytes:
    """16-bit mono PCM to a constant-bit-rate MP3 stream (LAME, deterministic)."""
    encoder = lameenc.Encoder()
    encoder.set_bit_rate(kbps)
    encoder.set_in_sample_rate(sample_rate)
    encoder.set_channels(1)
    encoder.set_quality(7)
    return bytes(encoder.encode(pcm) + encoder.flush())


def _same(data: bytes) -> bytes:
    return data


DECODERS: dict[str, Codec] = {"linear16": _same, "mulaw": mulaw_decode, "alaw": alaw_decode}
SAMPLE_BYTES = {"linear16": 2, "mulaw": 1, "alaw": 1}


def declared_choice(query: dict[str, str], model: Model, key: str, default: str) -> str:
    """A query parameter's value (or `default`), refused with Cloudflare's schema wording when the
    model's input schema has an enum for it that does not list it."""
    value = query.get(key, default)
    enum = model.input_schema.get("properties", {}).get(key, {}).get("enum")
    if isinstance(enum, list) and enum and value not in enum:
        allowed = ",".join(str(e) for e in enum)
        raise CFError(ErrorKind.BAD_INPUT, detail=f"Error: enum {value} not in {allowed} at '/{key}'")
    return value


def chosen_encoding(query: dict[str, str], model: Model, readable: tuple[str, ...]) -> str:
    """The session's `encoding` (default linear16): Cloudflare's enum error for one the catalog does
    not declare, the emulator's 5006 for a declared one it cannot read or write."""
    encoding = declared_choice(query, model, "encoding", "linear16")
    if encoding not in readable:
        short = model.name.rsplit("/", 1)[-1]
        raise CFError(ErrorKind.BAD_INPUT, detail=(
            f"Error: the emulator's {short} WebSocket takes encoding {', '.join(readable)}, not "
            f"{encoding!r} (declared by Cloudflare, but it needs a native codec the emulator does not ship)"))
    return encoding

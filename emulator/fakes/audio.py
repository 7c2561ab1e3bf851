"""Audio duration sniffing for speech-to-text fakes, and seeded WAV/MP3 output for text-to-speech."""

from __future__ import annotations

import struct

import lameenc
import numpy as np

from emulator.fakes.seed import rng

DEFAULT_KBPS = 128
MIN_UNKNOWN_BYTES = 1024


class NotAudio(ValueError):
    """The bytes cannot be audio (empty, an image, JSON/text, or an unknown non-audio type)."""


# --- duration ---------------------------------------------------------------------------------

# MPEG audio header tables, indexed [version][layer] → kbps by bitrate index.
_MP3_BITRATES: dict[tuple[int, int], tuple[int, ...]] = {
    (1, 1): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (1, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (1, 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (2, 1): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (2, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (2, 3): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MP3_RATES = {1: (44100, 48000, 32000), 2: (22050, 24000, 16000), 25: (11025, 12000, 8000)}

_AUDIO_SUBTYPES = ("mpeg", "mp3", "mp4", "m4a", "aac", "ogg", "opus", "webm", "flac", "wav", "amr", "3gpp")


def _wav_duration(data: bytes) -> float:
    if data[8:12] != b"WAVE":
        raise NotAudio("RIFF file is not WAVE audio")
    pos = 12
    byte_rate = 0
    while pos + 8 <= len(data):
        chunk_id = data[pos : pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        body = pos + 8
        if chunk_id == b"fmt " and body + 16 <= len(data):
            # byte_rate is present for PCM and WAVE_FORMAT_EXTENSIBLE alike; derive it if a
            # careless writer left it zero.
            _tag, channels, rate, byte_rate, block_align, bits = struct.unpack_from("<HHIIHH", data, body)
            if not byte_rate:
                byte_rate = rate * (block_align or channels * max(bits, 8) // 8)
        elif chunk_id == b"data":
            if not byte_rate:
                raise NotAudio("WAVE data chunk before a usable fmt chunk")
            available = len(data) - body
            # Streamed WAVs carry 0 or 0xFFFFFFFF as size; truncated uploads carry less than stated.
            data_bytes = available if size in (0, 0xFFFFFFFF) else min(size, available)
            return data_bytes / byte_rate
        pos = body + size + (size & 1)
    raise NotAudio("WAVE file has no data chunk")


def _syncsafe(raw: bytes) -> int:
    return (raw[0] << 21) | (raw[1] << 14) | (raw[2] << 7) | raw[3]


def _mp3_header(data: bytes, pos: int) -> tuple[int, int, int, int] | None:
    """(kbps, sample_rate, samples_per_frame, frame_bytes) for a valid MPEG audio header at pos."""
    if pos + 4 > len(data) or data[pos] != 0xFF or data[pos + 1] & 0xE0 != 0xE0:
        return None
    version_bits = (data[pos + 1] >> 3) & 3
    layer_bits = (data[pos + 1] >> 1) & 3
    bitrate_index = data[pos + 2] >> 4
    rate_index = (data[pos + 2] >> 2) & 3
    if version_bits == 1 or layer_bits == 0 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    version = {3: 1, 2: 2, 0: 25}[version_bits]
    layer = 4 - layer_bits
    kbps = _MP3_BITRATES[(min(version, 2), layer)][bitrate_index]
    rate = _MP3_RATES[version][rate_index]
    padding = (data[pos + 2] >> 1) & 1
    if layer == 1:
        return kbps, rate, 384, (12 * kbps * 1000 // rate + padding) * 4
    samples = 1152 if layer == 2 or version == 1 else 576
    return kbps, rate, samples, samples // 8 * kbps * 1000 // rate + padding


def _mp3_duration(data: bytes) -> float:
    start = 0
    if data.startswith(b"ID3") and len(data) >= 10:
        start = 10 + _syncsafe(data[6:10]) + (10 if data[5] & 0x10 else 0)
    pos = start
    limit = min(len(data), start + 64 * 1024)
    while pos < limit:
        header = _mp3_header(data, pos)
        # Two consecutive valid headers, so stray 0xFFE bits inside the tag don't fool us.
        if header is not None and (
            pos + header[3] >= len(data) or _mp3_header(data, pos + header[3]) is not None
        ):
            break
        pos += 1
    else:
        raise NotAudio("no MPEG audio frame found")
    kbps, rate, samples, _ = header
    # A Xing/Info/VBRI header in the first frame gives the exact frame count.
    first = data[pos : pos + 200]
    for tag in (b"Xing", b"Info"):
        at = first.find(tag)
        if at >= 0 and at + 12 <= len(first):
            (flags,) = struct.unpack_from(">I", first, at + 4)
            if flags & 1:
                (frames,) = struct.unpack_from(">I", first, at + 8)
                if frames:
                    return frames * samples / rate
    at = first.find(b"VBRI")
    if at >= 0 and at + 18 <= len(first):
        (frames,) = struct.unpack_from(">I", first, at + 14)
        if frames:
            return frames * samples / rate
    end = len(data) - (128 if data[-128:-125] == b"TAG" else 0)
    return (end - pos) * 8 / (kbps * 1000)


def _flac_duration(data: bytes) -> float | None:
    # fLaC, then a 4-byte block header and the 34-byte STREAMINFO block.
    if len(data) < 42 or data[4] & 0x7F != 0:
        return None
    info = int.from_bytes(data[18:26], "big")
    rate = info >> 44
    total = info & ((1 << 36) - 1)
    return total / rate if rate and total else None


def _ogg_duration(data: bytes) -> float | None:
    head = data[:512]
    at = head.find(b"OpusHead")
    if at >= 0 and at + 12 <= len(head):
        rate = 48000
        pre_skip = struct.unpack_from("<H", head, at + 10)[0]
    else:
        at = head.find(b"\x01vorbis")
        if at < 0 or at + 16 > len(head):
            return None
        rate = struct.unpack_from("<I", head, at + 12)[0]
        pre_skip = 0
    last = data.rfind(b"OggS")
    if not rate or last < 0 or last + 14 > len(data):
        return None
    (granule,) = struct.unpack_from("<q", data, last + 6)
    return max(0, granule - pre_skip) / rate if granule > 0 else None


def _looks_like_text(data: bytes) -> bool:
    sample = data[:1024]
    try:
        decoded = sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut by the 1 KB window is still text.
        if exc.start < len(sample) - 3:
            return False
        decoded = sample[: exc.start].decode("utf-8")
    if not decoded:
        return False
    printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in decoded)
    return printable / len(decoded) > 0.95


def _non_audio_kind(data: bytes) -> str | None:
    signatures = (
        (b"\x89PNG", "a PNG image"),
        (b"\xff\xd8\xff", "a JPEG image"),
        (b"GIF8", "a GIF image"),
        (b"%PDF", "a PDF document"),
        (b"PK\x03\x04", "a ZIP archive"),
        (b"BM", "a BMP image"),
    )
    for magic, kind in signatures:
        if data.startswith(magic):
            return kind
    if data[:4] == b"RIFF" and data[8:12] in (b"WEBP", b"AVI "):
        return "a WebP image" if data[8:12] == b"WEBP" else "an AVI video"
    if _looks_like_text(data):
        return "JSON" if data.lstrip()[:1] in (b"{", b"[") else "text"
    return None


def _estimate(data: bytes, kbps: int = DEFAULT_KBPS) -> float:
    return len(data) * 8 / (kbps * 1000)


def duration_seconds(data: bytes, content_type: str | None = None) -> float:
    """Seconds of audio in `data`: exact for WAV/FLAC/OGG, header-based for MP3, else estimated at 128 kbps.

    Raises NotAudio for empty input, images, documents, text/JSON, and unknown bytes that are
    neither labelled as audio nor large enough to plausibly be audio.
    """
    if not data:
        raise NotAudio("empty audio input")
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return _wav_duration(data)
    if data[:4] == b"fLaC":
        return _flac_duration(data) or _estimate(data)
    if data[:4] == b"OggS":
        return _ogg_duration(data) or _estimate(data)
    if data[:3] == b"ID3" or _mp3_header(data, 0) is not None:
        return _mp3_duration(data)
    # ADTS AAC, WebM/Matroska, MP4/M4A, AMR, AIFF, CAF: sized by an assumed bitrate.
    if (
        (len(data) >= 2 and data[0] == 0xFF and data[1] & 0xF6 == 0xF0)
        or data[:4] in (b"\x1a\x45\xdf\xa3", b"FORM", b"caff")
        or data[4:8] == b"ftyp"
        or data.startswith(b"#!AMR")
    ):
        return _estimate(data)
    kind = _non_audio_kind(data)
    if kind is not None:
        raise NotAudio(f"input is {kind}, not audio")
    major, _, subtype = mime.partition("/")
    if major in ("audio", "video") or subtype in _AUDIO_SUBTYPES:
        return _estimate(data)
    if mime in ("", "application/octet-stream", "binary/octet-stream"):
        if len(data) >= MIN_UNKNOWN_BYTES:
            return _estimate(data)
        raise NotAudio(f"unrecognised {len(data)}-byte input is too small to be audio")
    raise NotAudio(f"content type {mime} with unrecognised bytes is not audio")


# --- synthesis --------------------------------------------------------------------------------


def _samples(seconds: float, seed: int, sample_rate: int) -> np.ndarray:
    """int16 mono: a seeded voice-like tone (pitch glide + harmonics + syllable envelope) over noise."""
    count = max(0, round(seconds * sample_rate))
    gen = rng(seed)
    t = np.arange(count, dtype=np.float64) / sample_rate
    base = float(gen.uniform(110.0, 260.0))
    glide = float(gen.uniform(-0.15, 0.15))
    phase = 2 * np.pi * base * (t + glide * t * t / max(seconds, 1e-3) / 2)
    wave = np.sin(phase) + 0.5 * np.sin(2 * phase + float(gen.uniform(0, np.pi))) + 0.25 * np.sin(3 * phase)
    syllables = float(gen.uniform(3.0, 5.0))
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * syllables * t + float(gen.uniform(0, np.pi)))
    noise = gen.standard_normal(count) * 0.03
    signal = (wave / 1.75 * envelope * 0.6 + noise) * 32767 * 0.8
    return np.clip(signal, -32768, 32767).astype("<i2")


def pcm(seconds: float, seed: int, sample_rate: int = 24000) -> bytes:
    """Raw 16-bit little-endian mono PCM (linear16) of `seconds`, fixed by `seed`."""
    return _samples(seconds, seed, sample_rate).tobytes()


def wav(seconds: float, seed: int, sample_rate: int = 16000) -> bytes:
    """16-bit mono PCM WAV of `seconds` (rounded to whole samples), fixed by `seed`."""
    pcm = _samples(seconds, seed, sample_rate).tobytes()
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + len(pcm),
        b"WAVE",
        b"fmt ",
        16,
        1,
        1,
        sample_rate,
        sample_rate * 2,
        2,
        16,
        b"data",
        len(pcm),
    )
    return header + pcm


def mp3(seconds: float, seed: int, sample_rate: int = 24000, kbps: int = 48) -> bytes:
    """A real, decodable mono CBR MP3 of about `seconds`, fixed by `seed` (LAME is deterministic)."""
    encoder = lameenc.Encoder()
    encoder.set_bit_rate(kbps)
    encoder.set_in_sample_rate(sample_rate)
    encoder.set_channels(1)
    encoder.set_quality(7)
    data = encoder.encode(_samples(seconds, seed, sample_rate).tobytes())
    return bytes(data + encoder.flush())

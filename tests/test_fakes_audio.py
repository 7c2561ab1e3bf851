"""Tests for audio duration sniffing and the seeded WAV/MP3 generators."""

from __future__ import annotations

import io
import json
import struct
import wave

import mutagen.mp3
import pytest

from emulator.fakes.audio import NotAudio, duration_seconds, mp3, wav
from emulator.fakes.images import png


def _wave_module_file(seconds: float, rate: int, channels: int, width: int) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(width)
        out.setframerate(rate)
        out.writeframes(b"\x01" * round(seconds * rate) * channels * width)
    return buffer.getvalue()


@pytest.mark.parametrize("seconds", [0.25, 1.0, 2.5, 12.0])
def test_wav_duration_exact(seconds: float) -> None:
    data = wav(seconds, 1)
    assert duration_seconds(data) == seconds
    assert duration_seconds(data, "audio/wav") == seconds
    with wave.open(io.BytesIO(data)) as parsed:
        assert parsed.getnframes() == round(seconds * 16000)
        assert (parsed.getnchannels(), parsed.getsampwidth(), parsed.getframerate()) == (1, 2, 16000)


@pytest.mark.parametrize(("rate", "channels", "width"), [(8000, 1, 1), (44100, 2, 2), (48000, 2, 3)])
def test_wav_from_wave_module(rate: int, channels: int, width: int) -> None:
    assert duration_seconds(_wave_module_file(1.5, rate, channels, width)) == pytest.approx(1.5, abs=1e-9)


def test_wav_extensible_and_extra_chunks() -> None:
    pcm = b"\x00\x00" * 2 * 22050  # 1 s of 16-bit stereo at 22.05 kHz
    fmt = struct.pack("<HHIIHH", 0xFFFE, 2, 22050, 22050 * 4, 4, 16)
    fmt += struct.pack(
        "<HHI16s", 22, 16, 3, b"\x01\x00\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
    )
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt
    chunks += b"LIST" + struct.pack("<I", 5) + b"INFOx" + b"\x00"  # odd size → pad byte
    chunks += b"data" + struct.pack("<I", len(pcm)) + pcm
    data = b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks
    assert duration_seconds(data, "audio/x-wav") == pytest.approx(1.0)


def test_wav_streamed_size() -> None:
    data = bytearray(wav(1.0, 2))
    data[40:44] = b"\xff\xff\xff\xff"
    assert duration_seconds(bytes(data)) == pytest.approx(1.0)


def test_wav_deterministic_and_seeded() -> None:
    assert wav(1.0, 5) == wav(1.0, 5)
    assert wav(1.0, 5) != wav(1.0, 6)
    assert len(wav(1.0, 5, sample_rate=8000)) == 44 + 16000


def test_mp3_decodes_to_requested_length() -> None:
    data = mp3(2.0, 1)
    assert data == mp3(2.0, 1)
    assert data != mp3(2.0, 2)
    info = mutagen.mp3.MP3(io.BytesIO(data)).info
    assert info.length == pytest.approx(2.0, rel=0.05)
    assert info.sample_rate == 24000
    assert duration_seconds(data, "audio/mpeg") == pytest.approx(info.length, rel=0.02)


def test_mp3_other_rate_and_id3() -> None:
    data = mp3(3.0, 4, sample_rate=44100, kbps=128)
    assert mutagen.mp3.MP3(io.BytesIO(data)).info.length == pytest.approx(3.0, rel=0.05)
    tag = b"ID3\x04\x00\x00" + bytes([0, 0, 0, 20]) + b"\x00" * 20
    assert duration_seconds(tag + data) == pytest.approx(duration_seconds(data), rel=0.01)


def test_flac_streaminfo_exact() -> None:
    rate, total = 16000, 16000 * 3
    info = (rate << 44) | (0 << 41) | (15 << 36) | total
    streaminfo = struct.pack(">HH", 4096, 4096) + b"\x00" * 6 + info.to_bytes(8, "big") + b"\x00" * 16
    data = b"fLaC" + bytes([0x80, 0, 0, 34]) + streaminfo + b"\x00" * 100
    assert duration_seconds(data, "audio/flac") == pytest.approx(3.0)


def test_ogg_opus_granule() -> None:
    head = (
        b"OggS"
        + b"\x00" * 22
        + b"\x01\x13"
        + b"OpusHead\x01\x01"
        + struct.pack("<HI", 312, 48000)
        + b"\x00" * 3
    )
    last = b"OggS\x00\x04" + struct.pack("<q", 48000 * 4 + 312) + b"\x00" * 20
    assert duration_seconds(head + b"\x00" * 2000 + last, "audio/ogg") == pytest.approx(4.0)


@pytest.mark.parametrize(
    ("magic", "content_type"),
    [(b"\x1a\x45\xdf\xa3", "audio/webm"), (b"\x00\x00\x00\x20ftypM4A ", "audio/mp4"), (b"", "audio/aac")],
)
def test_estimated_formats(magic: bytes, content_type: str) -> None:
    data = magic + bytes(range(256)) * 64
    assert duration_seconds(data, content_type) == pytest.approx(len(data) * 8 / 128_000)


def test_octet_stream_unknown_magic() -> None:
    blob = bytes(range(256)) * 8
    assert duration_seconds(blob, "application/octet-stream") == pytest.approx(len(blob) * 8 / 128_000)
    assert duration_seconds(blob) == pytest.approx(len(blob) * 8 / 128_000)
    with pytest.raises(NotAudio, match="too small"):
        duration_seconds(bytes(range(200)), "application/octet-stream")


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (b"", None),
        (b"", "audio/wav"),
        (png(16, 16, 1), "application/octet-stream"),
        (png(16, 16, 1), "audio/mpeg"),
        (json.dumps({"audio": [1, 2, 3] * 500}).encode(), "application/octet-stream"),
        (b"Bonjour, ceci n'est pas un fichier audio. " * 40, None),
        (bytes(range(256)) * 8, "image/png"),
        (bytes(range(256)) * 8, "application/json"),
        (b"RIFF\x10\x00\x00\x00WAVEfmt ", None),
    ],
)
def test_not_audio(data: bytes, content_type: str | None) -> None:
    with pytest.raises(NotAudio) as excinfo:
        duration_seconds(data, content_type)
    assert str(excinfo.value)
    assert isinstance(excinfo.value, ValueError)

"""Deterministic fake embeddings: feature hashing of words and word stems into unit vectors."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from functools import cache

import numpy as np

from emulator.fakes.seed import derive_seed, rng
from emulator.fakes.tokens import findall_in_slices
from emulator.gil import GilTurns

# Token vectors live in a latent space of at most this many dimensions and are spread over the
# requested size by repeating them under fixed permutations and sign flips. That map is orthogonal
# up to scale (cosines survive), is pure indexing (no BLAS, whose summation order varies by CPU,
# so bytes match across machines), and summing ~50 short vectors per text keeps 100×1024 fast.
LATENT_DIMS = 256

_WORD_WEIGHT = 1.0
_STEM_WEIGHT = 0.5
_TEXT_WEIGHT = 0.25
# Real sentence embeddings are anisotropic (unrelated texts still score ~0.3-0.5 cosine); a shared
# direction reproduces that without disturbing the ordering by shared words.
_COMMON_WEIGHT = 0.7
_STEM_CHARS = 5
# Word and stem rows kept (1 KiB each at 256 latent dims); whole-text rows are never kept, since a
# text rarely recurs and caching them grew the table by one row per text embedded.
_CACHE_LIMIT = 32_768

_WORD_RE = re.compile(r"\w+")

# A batch of more token rows than this is embedded one text and one slice of rows at a time: each
# numpy step then touches at most _SLICE_ROWS × latent floats (8 MiB, a few ms holding the GIL),
# where one gather of 100 texts of 50,000 words took 4 GB and held the GIL for hundreds of ms.
_ONE_STEP_ROWS = 16_384
_ONE_STEP_CHARS = 1 << 20
_SLICE_ROWS = 8_192


class _TokenTable:
    """Rows of fixed unit vectors, one per (token, salt), in one matrix so a batch is one gather.

    Vectors come from SHAKE-256 of the token (never Python's randomised hash()), so a row's value
    does not depend on when it was added or on what else the table holds.
    """

    def __init__(self, latent: int) -> None:
        self.latent = latent
        self.rows: dict[int, dict[str, int]] = {}  # salt → token → row
        self.size = 0
        self.matrix = np.empty((1024, latent), dtype=np.float32)

    def ids(self, tokens: list[str], salt: int) -> list[int]:
        rows = self.rows.setdefault(salt, {})
        missing = [t for t in dict.fromkeys(tokens) if t not in rows]
        if missing:
            if self.size + len(missing) > _CACHE_LIMIT:
                self.rows.clear()
                self.size = 0
                rows = self.rows.setdefault(salt, {})
                # Anything referenced by this call must be present after the reset.
                missing = list(dict.fromkeys(tokens))
            self._add(missing, salt, rows)
        return [rows[t] for t in tokens]

    def _add(self, tokens: list[str], salt: int, rows: dict[str, int]) -> None:
        latent = self.latent
        block = _unit_rows(tokens, salt, latent)
        first = self.size
        needed = first + len(tokens)
        if needed > len(self.matrix):
            grown = np.empty((max(needed, 2 * len(self.matrix)), latent), dtype=np.float32)
            grown[:first] = self.matrix[:first]
            self.matrix = grown
        self.matrix[first:needed] = block
        rows.update(zip(tokens, range(first, needed), strict=True))
        self.size = needed


def _unit_rows(tokens: Sequence[str], salt: int, latent: int) -> np.ndarray:
    """One fixed unit vector per token, from SHAKE-256 of the token and the salt."""
    prefix = b"%d\x1f" % salt
    raw = b"".join(
        hashlib.shake_256(prefix + t.encode("utf-8", "surrogatepass")).digest(latent) for t in tokens
    )
    block = np.frombuffer(raw, dtype=np.int8).reshape(len(tokens), latent).astype(np.float32)
    block += np.float32(0.5)
    # Entries are k + 0.5, so these float64 sums of squares are exact in any order.
    block /= np.sqrt(np.square(block, dtype=np.float64).sum(axis=1, keepdims=True)).astype(np.float32)
    return block


@cache
def _table(latent: int) -> _TokenTable:
    return _TokenTable(latent)


@cache
def _expansion(latent: int, dims: int, salt: int) -> tuple[np.ndarray, np.ndarray]:
    """(source index, sign) per output dimension: block b is a seeded signed permutation of latent."""
    gen = rng(derive_seed("embed-expansion", latent, dims, salt))
    blocks = -(-dims // latent)
    index = np.concatenate([gen.permutation(latent) for _ in range(blocks)])[:dims]
    signs = np.where(gen.random(blocks * latent)[:dims] < 0.5, -1.0, 1.0).astype(np.float32)
    index.flags.writeable = False
    signs.flags.writeable = False
    return index, signs


def _latent_dims(dims: int) -> int:
    # A latent size dividing dims keeps every block whole, so inner products scale exactly.
    for latent in (LATENT_DIMS, LATENT_DIMS // 2, LATENT_DIMS // 4):
        if dims % latent == 0:
            return latent
    return min(dims, LATENT_DIMS)


def embed(texts: Sequence[str], dims: int, *, salt: int = 0) -> np.ndarray:
    """(len(texts), dims) float32 unit rows; a row depends only on its own text, `dims` and `salt`."""
    if dims <= 0:
        raise ValueError(f"dims must be positive, got {dims}")
    latent = _latent_dims(dims)
    if not texts:
        return np.empty((0, dims), dtype=np.float32)
    # A text repeated in the batch is embedded once (its row depends on nothing else), found one
    # text at a time: hashing the 100 long texts of a 20 MB batch in one call holds the GIL ~10 ms.
    turns = GilTurns()
    where: dict[str, int] = {}
    for text in texts:
        where.setdefault(text, len(where))
        turns.tick()
    distinct = list(where)
    if sum(map(len, distinct)) > _ONE_STEP_CHARS:
        # One text at a time: the token lists of a 20 MB batch are never all alive at once.
        sums = []
        for text in distinct:
            sums.append(_latent_sums([text], latent, salt, turns))
            turns.tick()
        matrix = np.concatenate(sums)
    else:
        matrix = _latent_sums(distinct, latent, salt)
    if len(distinct) < len(texts):
        matrix = matrix[[where[text] for text in texts]]
    return _expanded(matrix, latent, dims, salt)


def _latent_sums(texts: Sequence[str], latent: int, salt: int, turns: GilTurns | None = None) -> np.ndarray:
    """(len(texts), latent) float32: each text's weighted sum of its token rows, before expansion."""
    tokens: list[str] = []
    weights: list[float] = []
    starts: list[int] = []
    for text in texts:
        starts.append(len(tokens))
        # The common direction and a whole-text component come first, so no segment is empty.
        tokens.append("\x00common")
        tokens.append("\x00common")  # stands in for the whole-text row, filled in after the gather
        weights.append(_COMMON_WEIGHT)
        weights.append(_TEXT_WEIGHT)
        words = findall_in_slices(_WORD_RE, text.lower())
        if words:
            # Stems (word prefixes) pull inflected forms of a word together: "embed"/"embedding".
            stems = ["\x00stem:" + w[:_STEM_CHARS] for w in words if len(w) > _STEM_CHARS]
            tokens += words
            weights += [_WORD_WEIGHT / len(words) ** 0.5] * len(words)
            if stems:
                tokens += stems
                weights += [_STEM_WEIGHT / len(stems) ** 0.5] * len(stems)
    table = _table(latent)
    whole_texts = _unit_rows(["\x00text:" + text for text in texts], salt, latent)
    starts.append(len(tokens))
    if len(tokens) > _ONE_STEP_ROWS:
        return _sums_in_slices(table, tokens, weights, starts, whole_texts, salt, turns or GilTurns())
    ids = table.ids(tokens, salt)
    gathered = table.matrix[ids]
    gathered[[start + 1 for start in starts[:-1]]] = whole_texts
    gathered *= np.asarray(weights, dtype=np.float32)[:, None]
    # One row-by-row reduction per text (fixed order, so a row's bits never depend on its batch);
    # ufunc.reduceat does the same job several times slower on this layout.
    matrix = np.empty((len(texts), latent), dtype=np.float32)
    for i in range(len(texts)):
        np.add.reduce(gathered[starts[i] : starts[i + 1]], axis=0, out=matrix[i])
    return matrix


def _sums_in_slices(table: _TokenTable, tokens: list[str], weights: list[float], starts: list[int],
                    whole_texts: np.ndarray, salt: int, turns: GilTurns) -> np.ndarray:
    """The weighted row sums `embed` computes in one gather, a slice of rows at a time. A reduction
    along axis 0 adds rows one after another, so a slice reduced after the running sum (placed as
    its first row) gives the one-step sum's bits exactly."""
    latent = table.latent
    matrix = np.empty((len(starts) - 1, latent), dtype=np.float32)
    for i in range(len(starts) - 1):
        total = matrix[i]
        for first in range(starts[i], starts[i + 1], _SLICE_ROWS):
            last = min(first + _SLICE_ROWS, starts[i + 1])
            leading = first == starts[i]
            block = np.empty((last - first + (0 if leading else 1), latent), dtype=np.float32)
            rows = block if leading else block[1:]
            ids = table.ids(tokens[first:last], salt)
            np.take(table.matrix, ids, axis=0, out=rows)
            if leading:
                rows[1] = whole_texts[i]  # every text starts with the common and the whole-text rows
            rows *= np.asarray(weights[first:last], dtype=np.float32)[:, None]
            if not leading:
                block[0] = total
            np.add.reduce(block, axis=0, out=total)
            turns.tick()
    return matrix


def _expanded(matrix: np.ndarray, latent: int, dims: int, salt: int) -> np.ndarray:
    index, signs = _expansion(latent, dims, salt)
    out = matrix[:, index]
    out *= signs
    # Row norms via numpy's own reduction (fixed order) rather than BLAS-backed linalg.norm.
    norms = np.sqrt(np.square(out, dtype=np.float64).sum(axis=1, keepdims=True))
    out /= norms.astype(np.float32)
    return out


def wire_rows(matrix: np.ndarray) -> np.ndarray:
    """The rows as the answer carries them: float64 holding the float32 values exactly, C-ordered.

    The real API writes float32 artefacts (`0.2800000011920929`): each float32 widened to a double.
    orjson serialises a float64 array to the same bytes as the equivalent nested lists of Python
    floats, without building 100×1024 float objects first (about 1.5 ms saved on such a batch).
    """
    return np.ascontiguousarray(matrix, dtype=np.float64)

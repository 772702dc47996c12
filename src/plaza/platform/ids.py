"""Identifiers: base62, the keyed permutation behind short codes, and time-ordered 53-bit ids."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable

ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_INDEX = {char: i for i, char in enumerate(ALPHABET)}
CODE_LENGTH = 7
CODE_SPACE = 62**CODE_LENGTH

_HALF_BITS = 21  # 42 bits cover 62^7 (about 2^41.7); cycle walking takes the rest
_HALF_MASK = (1 << _HALF_BITS) - 1
_ROUNDS = 6  # Luby-Rackoff: 4 rounds already make a strong pseudo-random permutation


def encode_base62(n: int, width: int = CODE_LENGTH) -> str:
    if n < 0 or n >= 62**width:
        raise ValueError(f"{n} does not fit in {width} base62 characters")
    chars = ["0"] * width
    for i in range(width - 1, -1, -1):
        n, digit = divmod(n, 62)
        chars[i] = ALPHABET[digit]
    return "".join(chars)


def decode_base62(text: str) -> int:
    n = 0
    for char in text:
        try:
            n = n * 62 + _INDEX[char]
        except KeyError:
            raise ValueError(f"not base62: {text!r}") from None
    return n


class CodePermutation:
    """A keyed bijection of [0, 62^7): a balanced Feistel network on 42 bits, with cycle walking."""

    def __init__(self, key: bytes) -> None:
        self._keys = [hashlib.blake2b(key, digest_size=16, person=f"round{r}".encode()).digest()
                      for r in range(_ROUNDS)]  # fmt: skip

    def _round(self, r: int, half: int) -> int:
        digest = hashlib.blake2b(half.to_bytes(3, "big"), digest_size=8, key=self._keys[r]).digest()
        return int.from_bytes(digest, "big") & _HALF_MASK

    def _encrypt(self, n: int) -> int:
        left, right = n >> _HALF_BITS, n & _HALF_MASK
        for r in range(_ROUNDS):
            left, right = right, left ^ self._round(r, right)
        return (left << _HALF_BITS) | right

    def _decrypt(self, n: int) -> int:
        left, right = n >> _HALF_BITS, n & _HALF_MASK
        for r in reversed(range(_ROUNDS)):
            left, right = right ^ self._round(r, left), left
        return (left << _HALF_BITS) | right

    def permute(self, n: int) -> int:
        if not 0 <= n < CODE_SPACE:
            raise ValueError(f"{n} is outside [0, 62^7)")
        n = self._encrypt(n)
        while n >= CODE_SPACE:  # cycle walking: stays a bijection of the smaller domain
            n = self._encrypt(n)
        return n

    def invert(self, m: int) -> int:
        if not 0 <= m < CODE_SPACE:
            raise ValueError(f"{m} is outside [0, 62^7)")
        m = self._decrypt(m)
        while m >= CODE_SPACE:
            m = self._decrypt(m)
        return m

    def code(self, n: int) -> str:
        return encode_base62(self.permute(n))


# 41 bits of milliseconds since 2025-01-01 (69 years), 4 bits of node, 8 bits of sequence: 53 bits, so an
# id is exact as a double (a Redis sorted-set score) and as a JavaScript number.
EPOCH_MS = 1_735_689_600_000
NODE_BITS, SEQUENCE_BITS = 4, 8
MAX_NODE = (1 << NODE_BITS) - 1
_SEQUENCE_MASK = (1 << SEQUENCE_BITS) - 1


class SnowflakeIds:
    """Time-ordered ids, strictly increasing within a process even if the wall clock steps back."""

    def __init__(self, node: int, clock: Callable[[], float] = time.time) -> None:
        if not 0 <= node <= MAX_NODE:
            raise ValueError(f"node must be 0-{MAX_NODE}")
        self._node, self._clock = node, clock
        self._last_ms, self._sequence = -1, 0
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            now_ms = max(int(self._clock() * 1000) - EPOCH_MS, self._last_ms)
            if now_ms == self._last_ms:
                self._sequence = (self._sequence + 1) & _SEQUENCE_MASK
                if self._sequence == 0:  # this millisecond is used up: borrow the next one
                    now_ms += 1
            else:
                self._sequence = 0
            self._last_ms = now_ms
            return (
                (now_ms << (NODE_BITS + SEQUENCE_BITS))
                | (self._node << SEQUENCE_BITS)
                | self._sequence
            )

    @staticmethod
    def timestamp_of(snowflake: int) -> float:
        return ((snowflake >> (NODE_BITS + SEQUENCE_BITS)) + EPOCH_MS) / 1000

"""Short codes: a keyed bijection of [0, 62^7) written as 7 base62 characters; time-ordered ids."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plaza.platform.ids import (
    CODE_SPACE,
    CodePermutation,
    SnowflakeIds,
    decode_base62,
    encode_base62,
)

CODE_RE = re.compile(r"^[0-9a-zA-Z]{7}$")
PERMUTATION = CodePermutation(b"unit-test-key")
values = st.integers(min_value=0, max_value=CODE_SPACE - 1)


@given(values)
def test_permutation_is_a_bijection(n: int) -> None:
    m = PERMUTATION.permute(n)
    assert 0 <= m < CODE_SPACE
    assert PERMUTATION.invert(m) == n


@given(values)
def test_codes_are_seven_base62_characters(n: int) -> None:
    code = PERMUTATION.code(n)
    assert CODE_RE.match(code)
    assert PERMUTATION.invert(decode_base62(code)) == n


@given(st.integers(min_value=0, max_value=CODE_SPACE - 1), st.integers(min_value=1, max_value=7))
def test_base62_round_trip(n: int, width: int) -> None:
    if n >= 62**width:
        with pytest.raises(ValueError):
            encode_base62(n, width)
    else:
        assert decode_base62(encode_base62(n, width)) == n


def test_no_two_counter_values_share_a_code() -> None:
    codes = {PERMUTATION.code(n) for n in range(20_000)}
    assert len(codes) == 20_000


def test_neighbours_are_not_guessable() -> None:
    codes = [PERMUTATION.code(n) for n in range(1_000)]
    shared_prefix = sum(a[:3] == b[:3] for a, b in itertools.pairwise(codes))
    assert shared_prefix < 5  # sequential counters give unrelated codes
    assert codes != sorted(codes)


def test_the_key_changes_the_permutation() -> None:
    other = CodePermutation(b"another-key")
    assert [PERMUTATION.code(n) for n in range(50)] != [other.code(n) for n in range(50)]


def test_out_of_range_is_refused() -> None:
    for bad in (-1, CODE_SPACE):
        with pytest.raises(ValueError):
            PERMUTATION.permute(bad)
    with pytest.raises(ValueError):
        decode_base62("abc!")


def test_snowflakes_increase_even_when_the_clock_steps_back() -> None:
    moments = iter([1_800_000_000.0] * 300 + [1_799_999_999.0] * 10)
    ids = SnowflakeIds(node=3, clock=lambda: next(moments))
    made = [ids.next() for _ in range(310)]
    assert made == sorted(made)
    assert len(set(made)) == len(made)
    assert all(i < 2**53 for i in made)
    assert SnowflakeIds.timestamp_of(made[0]) == pytest.approx(1_800_000_000.0, abs=0.001)

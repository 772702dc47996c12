from __future__ import annotations

import pytest

from plaza.links.clicks import MalformedBatch, checked_click, decode_batch, encode_batch


def test_batches_round_trip_with_and_without_counts() -> None:
    batch_id, rows = decode_batch(
        encode_batch("b1", [(1, 2.0, None, None, None), (1, 3.0, None, None, None, 4)])
    )
    assert batch_id == "b1"
    assert [checked_click(row) for row in rows] == [
        (1, 2.0, None, None, None, 1),
        (1, 3.0, None, None, None, 4),
    ]


@pytest.mark.parametrize("count", [0, -1, 1.5, "2", 10**9])
def test_a_bad_count_is_refused(count: object) -> None:
    with pytest.raises(MalformedBatch):
        _, rows = decode_batch(encode_batch("b1", [(1, 2.0, None, None, None, count)]))  # type: ignore[list-item]
        checked_click(rows[0])

"""Plaza's log lines: one JSON object a line, with the fields operators filter on."""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Iterator

import orjson
import pytest
import structlog

from plaza.platform import logs
from plaza.settings import Settings

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """configure_logging sets up the whole process; the tests after these get theirs back."""
    names = ["", "uvicorn", "uvicorn.error", "uvicorn.access"]
    saved = [(logging.getLogger(n), logging.getLogger(n).handlers[:]) for n in names]
    propagate = [logger.propagate for logger, _ in saved]
    level = logging.getLogger().level
    yield
    for (logger, handlers), flag in zip(saved, propagate, strict=True):
        logger.handlers[:], logger.propagate = handlers, flag
    logging.getLogger().setLevel(level)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def test_a_json_line_carries_event_level_logger_time_and_request_id(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logs.configure_logging(Settings(_env_file=None, log_format="json"))  # type: ignore[call-arg]
    structlog.contextvars.bind_contextvars(request_id="r-1")
    before = dt.datetime.now(dt.UTC)
    structlog.get_logger("plaza.http").info("request", status=200)
    after = dt.datetime.now(dt.UTC)
    line = orjson.loads(capsys.readouterr().err)
    assert {k: line[k] for k in ("event", "level", "logger", "request_id", "status")} == {
        "event": "request",
        "level": "info",
        "logger": "plaza.http",
        "request_id": "r-1",
        "status": 200,
    }
    assert ISO_UTC.match(line["timestamp"]), line["timestamp"]
    at = dt.datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00"))
    assert before - dt.timedelta(microseconds=1) <= at <= after


@pytest.mark.parametrize(
    "moments",
    [
        [1_800_000_000.0, 1_800_000_000.5, 1_800_000_001.25, 1_800_000_000.75],
        [1_799_999_999.999999, 1_800_000_000.000001, 1_800_086_400.123456],
    ],
)
def test_timestamps_are_the_moments_in_utc_to_the_microsecond(
    moments: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The date and time of day are formatted once a second: a line in another second, later or
    earlier (the clock stepped back), still shows its own."""
    stamp = logs._IsoTimestamp()
    for moment in moments:
        monkeypatch.setattr(logs.time, "time", lambda moment=moment: moment)
        text = stamp(None, "info", {})["timestamp"]
        assert ISO_UTC.match(text), text
        shown = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        expected = dt.datetime.fromtimestamp(moment, dt.UTC)
        assert abs(shown - expected) <= dt.timedelta(microseconds=1), (text, expected)

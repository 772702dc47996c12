from __future__ import annotations

from pathlib import Path

import pytest

from plaza.settings import Rate, Settings


@pytest.mark.parametrize(
    ("text", "capacity", "period_s"),
    [("100/hour", 100, 3600), ("10/15min", 10, 900), ("20/s", 20, 1), ("5 / 2 days", 5, 172800)],
)
def test_rates_parse(text: str, capacity: int, period_s: float) -> None:
    assert Rate.parse(text) == Rate(capacity, period_s)


@pytest.mark.parametrize("text", ["", "100", "0/hour", "ten/hour", "5/fortnight"])
def test_bad_rates_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="rate"):
        Rate.parse(text)


def test_blocked_hosts_from_list_and_file(tmp_path: Path) -> None:
    listed = Settings(_env_file=None, blocked_hosts="Evil.example, bad.test.,")
    assert listed.blocked_host_set() == {"evil.example", "bad.test"}
    path = tmp_path / "blocked.txt"
    path.write_text("# phishing\nphish.example\n\nmalware.test\n")
    from_file = Settings(_env_file=None, blocked_hosts=f"@{path}")
    assert from_file.blocked_host_set() == {"phish.example", "malware.test"}


def test_migrations_run_on_start_only_for_sqlite_by_default() -> None:
    assert Settings(_env_file=None).should_migrate_on_start
    pg = Settings(_env_file=None, database_url="postgresql+asyncpg://x@localhost/db")
    assert not pg.should_migrate_on_start
    assert Settings(
        _env_file=None, database_url=pg.database_url, auto_migrate=True
    ).should_migrate_on_start

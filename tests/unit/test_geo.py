from __future__ import annotations

from pathlib import Path

import netaddr
import pytest
from mmdb_writer import MMDBWriter

from plaza.links.geo import GeoLookup


@pytest.fixture
def country_db(tmp_path: Path) -> Path:
    writer = MMDBWriter(ip_version=6, database_type="GeoLite2-Country", ipv4_compatible=True)
    writer.insert_network(netaddr.IPSet(["1.2.3.0/24"]), {"country": {"iso_code": "AU"}})
    writer.insert_network(netaddr.IPSet(["2a00:1450::/32"]), {"country": {"iso_code": "DE"}})
    path = tmp_path / "country.mmdb"
    writer.to_db_file(str(path))
    return path


def test_country_of_known_and_unknown_addresses(country_db: Path) -> None:
    geo = GeoLookup(country_db)
    try:
        assert geo.country("1.2.3.4") == "AU"
        assert geo.country("2a00:1450::1") == "DE"
        assert geo.country("8.8.8.8") is None
        assert geo.country("10.0.0.1") is None  # private: never in a GeoIP database
        assert geo.country("not an ip") is None
        assert geo.country(None) is None
    finally:
        geo.close()


def test_without_a_database_every_country_is_unknown() -> None:
    assert GeoLookup(None).country("1.2.3.4") is None

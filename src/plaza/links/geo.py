"""Country of a client address, from a GeoIP2/GeoLite2 Country database when PLAZA_GEOIP_DB names one."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import geoip2.database
import geoip2.errors


class GeoLookup:
    def __init__(self, path: Path | None) -> None:
        self._reader = geoip2.database.Reader(str(path)) if path else None

    def country(self, ip: str | None) -> str | None:
        """ISO 3166 code, or None when unknown (no database, private or invalid address)."""
        if self._reader is None or not ip:
            return None
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return None
        if not address.is_global:
            return None
        try:
            code = self._reader.country(str(address)).country.iso_code
        except (geoip2.errors.AddressNotFoundError, ValueError):
            return None
        return str(code) if code else None

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()

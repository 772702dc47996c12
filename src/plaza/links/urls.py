"""Long URLs for shortening: normalised (scheme and host lower-case, IDNA host, default port dropped,
non-ASCII percent-encoded as browsers do) and refused with a reason when they cannot be a safe target."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import quote, urlsplit, urlunsplit

import idna

MAX_URL_LENGTH = 2048
_DEFAULT_PORTS = {"http": 80, "https": 443}
_FORBIDDEN_CHARS = re.compile(r"[\x00-\x20\x7f]")  # controls and spaces are never part of a URL
_LABEL_RE = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")
# Characters kept as they are in path, query and fragment: the RFC 3986 set plus "%" (already encoded).
_SAFE = "!#$%&'()*+,/:;=?@[]~-._"


class InvalidUrl(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _invalid(message: str) -> InvalidUrl:
    return InvalidUrl("invalid_url", message)


def _ascii_host(host: str) -> str:
    if host.startswith("["):
        try:
            return f"[{ipaddress.IPv6Address(host[1:-1]).compressed}]"
        except ValueError:
            raise _invalid("The URL's IPv6 address is not valid.") from None
    host = host.rstrip(".").lower()
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        pass
    try:
        # Most hosts are plain ASCII already, and the IDNA codec is comparatively slow.
        ascii_host = host if host.isascii() else idna.encode(host, uts46=True).decode("ascii")
    except idna.IDNAError:
        raise _invalid("The URL's host name is not valid.") from None
    labels = ascii_host.split(".")
    if not all(_LABEL_RE.match(label) for label in labels):
        raise _invalid("The URL's host name is not valid.")
    return ascii_host


def _host_and_port(netloc: str, scheme: str) -> tuple[str, int | None]:
    if "@" in netloc:
        raise _invalid("URLs with a user name or password are not accepted.")
    host, port_text = netloc, ""
    if netloc.startswith("["):
        end = netloc.find("]")
        if end < 0:
            raise _invalid("The URL's IPv6 address is not valid.")
        host, rest = netloc[: end + 1], netloc[end + 1 :]
        if rest and not rest.startswith(":"):
            raise _invalid("The URL's host is not valid.")
        port_text = rest[1:]
    elif ":" in netloc:
        host, port_text = netloc.rsplit(":", 1)
    port = None
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise _invalid("The URL's port is not valid.")
        port = int(port_text)
    if not host:
        raise _invalid("The URL has no host.")
    return _ascii_host(host), None if port == _DEFAULT_PORTS[scheme] else port


def _is_under(host: str, domains: frozenset[str]) -> bool:
    parts = host.strip("[]").split(".")
    return any(".".join(parts[i:]) in domains for i in range(len(parts)))


def normalise_url(
    raw: str,
    *,
    own_hosts: frozenset[str],
    blocked_hosts: frozenset[str],
    max_length: int = MAX_URL_LENGTH,
) -> str:
    """The normalised URL, or InvalidUrl with code invalid_url, redirect_loop or blocked_url.

    `own_hosts` are this service's host names (ports ignored): a link there would redirect to itself.
    A blocked host blocks its subdomains too.
    """
    text = raw.strip()
    if not text or len(text) > max_length * 3 or _FORBIDDEN_CHARS.search(text):
        raise _invalid("Give an absolute http or https URL without spaces.")
    try:
        parts = urlsplit(text)
    except ValueError:
        raise _invalid("The URL is not valid.") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not text[len(scheme) + 1 :].startswith("//"):
        raise _invalid("Only absolute http and https URLs can be shortened.")
    host, port = _host_and_port(parts.netloc, scheme)
    netloc = host if port is None else f"{host}:{port}"
    path, query, fragment = (
        quote(p, safe=_SAFE) for p in (parts.path, parts.query, parts.fragment)
    )
    result = urlunsplit((scheme, netloc, path, query, fragment))
    if len(result) > max_length:
        raise _invalid(f"URLs are limited to {max_length} characters.")
    bare_host = host.strip("[]")
    if bare_host in own_hosts:
        raise InvalidUrl("redirect_loop", "That URL points back at this service's own short links.")
    if _is_under(bare_host, blocked_hosts):
        raise InvalidUrl("blocked_url", "Links to that host are not allowed here.")
    return result

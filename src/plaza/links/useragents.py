"""Device class and bot detection for click stats, from the User-Agent header (ua-parser)."""

from __future__ import annotations

import re
from functools import lru_cache

from ua_parser import parse_device

# Automated clients that ua-parser does not file under "Spider": link unfurlers, HTTP libraries and
# headless browsers. A redirect they fetch is not a person clicking.
_BOT_RE = re.compile(
    r"bot\b|bot/|crawl|spider|slurp|facebookexternalhit|preview|headless|scan|fetch|monitor|"
    r"whatsapp|slack|discord|telegram|skype|curl/|wget/|python-|go-http-client|java/|okhttp|libwww|"
    r"httpclient|axios/|node-fetch|apache-httpclient|pingdom|uptime|lighthouse",
    re.IGNORECASE,
)
_TABLET_RE = re.compile(r"ipad|tablet|kindle|silk/|playbook|nexus (7|9|10)|sm-t\d", re.IGNORECASE)
_MOBILE_RE = re.compile(
    r"mobile|iphone|ipod|android|windows phone|blackberry|opera mini", re.IGNORECASE
)
_DESKTOP_RE = re.compile(r"windows nt|macintosh|mac os x|x11|linux x86_64|cros", re.IGNORECASE)


def is_bot(user_agent: str | None) -> bool:
    """An absent user agent counts as a bot: every browser sends one."""
    return classify(user_agent) == "bot"


@lru_cache(maxsize=10_000)
def classify(user_agent: str | None) -> str:
    """One of mobile, desktop, tablet, bot, other."""
    if not user_agent or not user_agent.strip():
        return "bot"
    device = parse_device(user_agent)
    if _BOT_RE.search(user_agent) or (device is not None and device.family == "Spider"):
        return "bot"
    if _TABLET_RE.search(user_agent) or (
        "android" in user_agent.lower() and "mobile" not in user_agent.lower()
    ):
        return "tablet"
    if _MOBILE_RE.search(user_agent):
        return "mobile"
    if _DESKTOP_RE.search(user_agent):
        return "desktop"
    return "other"

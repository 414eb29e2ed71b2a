"""What outputs (logs, ``/status``, errors) may show of untrusted or secret text.  Pure."""

from __future__ import annotations

import re
from typing import Final

#: a JGroups/Infinispan member name as shown outside: the name before any topology suffix,
#: in a host-name-like character set, at most 253 characters (a DNS name)
_SHOWN_MEMBER: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,252}")
UNRECOGNISED_MEMBER: Final = "(unrecognised)"


def shown_member(member: str) -> str:
    """What outputs may show of a member name read from the log: only what parses as one.

    ``kc-0-32308(site-id=k8s, ...)`` shows as ``kc-0-32308``; anything else (raw log text
    that happened to sit between the brackets) shows as ``(unrecognised)``.
    """
    name = member.split("(", 1)[0].strip()
    return name if _SHOWN_MEMBER.fullmatch(name) else UNRECOGNISED_MEMBER


def redacted_url(url: str) -> str:
    """``url`` fit for logs and ``/status``: userinfo dropped, query (and fragment) replaced.

    ``https://admin:secret@kc:9000/health?access_token=x`` ->
    ``https://kc:9000/health?REDACTED``.  Pure string work, never raises.
    """
    rest, cut, _ = url.partition("?")
    if not cut:
        rest, cut, _ = url.partition("#")
    scheme, sep, after = rest.partition("://")
    if sep:
        authority, slash, path = after.partition("/")
        if "@" in authority:
            authority = authority.rpartition("@")[2]
        rest = scheme + sep + authority + slash + path
    elif "@" in rest:
        rest = rest.rpartition("@")[2]
    return rest + ("?REDACTED" if cut else "")

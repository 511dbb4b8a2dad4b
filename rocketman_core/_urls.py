"""Credentials never leave the process in a message: masking them in URLs."""

from __future__ import annotations

import re

__all__ = ["mask_url", "url_query"]

# scheme://user:password@host -> scheme://user:***@host, wherever a URL
# appears in a text (error messages from client libraries quote them).
# Patterns, not compiled ones: re compiles (and caches) them at the first
# call; compiling at import would cost every process that emits.
# The password runs to the last @ before the host: redis-py accepts a raw @ in it.
_CREDENTIALS = r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^\s/@:]*:)[^\s/]*@"
_USER_ONLY = r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^\s/@:]+)@"
_QUERY_SECRET = r"(?P<head>[?&](?:password|pass|token|secret)=)[^&\s]*"


def mask_url(text: str) -> str:
    """Return ``text`` with the password of every URL in it replaced by ``***``.

    A user name alone (``redis://token@host``) is masked too, since services
    often take a token in that place; so are ``password=`` query parameters.
    """
    text = re.sub(_CREDENTIALS, r"\g<head>***@", text)
    text = re.sub(_USER_ONLY, r"\g<head>***@", text)
    return re.sub(_QUERY_SECRET, r"\g<head>***", text, flags=re.IGNORECASE)


def url_query(url: str) -> tuple[str, dict[str, str]]:
    """Split ``url`` into the URL before its ``?`` and its query parameters, as written.

    Percent-escapes are decoded (``%2C`` is a comma), but ``+`` stays a plus
    and ``#`` stays in the value (``?topics=a/#`` gives ``a/#``), unlike
    ``urllib.parse.parse_qsl``, which turns ``+`` into a space and cuts at
    ``#``. A parameter given twice keeps its last value.
    """
    from urllib.parse import unquote

    base, _, query = url.partition("?")
    found: dict[str, str] = {}
    for part in query.split("&"):
        if part:
            key, _, value = part.partition("=")
            found[unquote(key)] = unquote(value)
    return base, found

"""Credentials never leave the process in a message: masking them in URLs."""

from __future__ import annotations

import re

__all__ = ["mask_url"]

# scheme://user:password@host -> scheme://user:***@host, wherever a URL
# appears in a text (error messages from client libraries quote them).
# Patterns, not compiled ones: re compiles (and caches) them at the first
# call; compiling at import would cost every process that emits.
_CREDENTIALS = r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^\s/@:]*:)[^\s/@]*@"
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

"""Credentials never leave the process in a message: masking them in URLs."""

from __future__ import annotations

import re

__all__ = ["mask_url"]

# scheme://user:password@host -> scheme://user:***@host, wherever a URL
# appears in a text (error messages from client libraries quote them).
_CREDENTIALS = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^\s/@:]*:)[^\s/@]*@")
_USER_ONLY = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^\s/@:]+)@")
_QUERY_SECRET = re.compile(r"(?P<head>[?&](?:password|pass|token|secret)=)[^&\s]*", re.I)


def mask_url(text: str) -> str:
    """Return ``text`` with the password of every URL in it replaced by ``***``.

    A user name alone (``redis://token@host``) is masked too, since services
    often take a token in that place; so are ``password=`` query parameters.
    """
    text = _CREDENTIALS.sub(r"\g<head>***@", text)
    text = _USER_ONLY.sub(r"\g<head>***@", text)
    return _QUERY_SECRET.sub(r"\g<head>***", text)

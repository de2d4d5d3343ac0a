"""The one redaction rule: credentials in URLs and known secret values never leave the process.

``scheme://user:password@host/...`` becomes ``scheme://user:***@host/...`` wherever text goes
out: bundle manifests, MLflow params and tags, log lines, API answers, error messages.
"""

from __future__ import annotations

import logging
import re
from typing import Any

#: ``scheme://user:password@`` (the password is anything up to the last ``@`` of the authority).
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*):[^\s/]*@")
MASK = "***"
_known: set[str] = set()


def register_secret(value: str | None) -> None:
    """Also mask this exact value (a token or a password) wherever :func:`redact` runs."""
    if value and len(value) >= 4:
        _known.add(value)


def redact(text: str) -> str:
    """``text`` with URL passwords and registered secrets replaced by ``***``."""
    out = _URL_PASSWORD.sub(lambda m: f"{m.group('head')}:{MASK}@", text)
    for secret in _known:
        if secret in out:
            out = out.replace(secret, MASK)
    return out


def redact_any(value: Any) -> Any:
    """Redact every string inside a JSON-like value (dicts, lists, strings)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_any(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_any(v) for v in value]
    return value


class RedactingFilter(logging.Filter):
    """A logging filter that redacts the formatted message (and the exception text)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message in place; never drops a record."""
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            red = redact(text)
            if red != text:
                record.exc_text, record.exc_info = red, None
        return True


def install_log_redaction() -> None:
    """Redact every record of every handler there is (idempotent).

    The root logger's handlers, and those of loggers that do not propagate to it (uvicorn's
    access log writes the query string, where a client may have put a token).
    """
    root = logging.getLogger()
    loggers = [root] + [
        lg for lg in logging.root.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    for lg in loggers:
        for handler in lg.handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(RedactingFilter())
    if not any(isinstance(f, RedactingFilter) for f in root.filters):
        root.addFilter(RedactingFilter())

"""Redaction of secrets: sensitive keys at any depth, and passwords in URLs.

A key is sensitive when, lower-cased with ``-`` and ``.`` read as ``_``, it equals one of the
configured names or ends with ``_`` and one of them: ``password``, ``db_password`` and
``http.request.headers.authorization`` are redacted, ``token_count`` is not.  In any string
value, and in messages, the password of a ``scheme://user:password@host`` URL is replaced,
and so is the value of a query-string parameter with a sensitive name
(``GET /v1/actions?access_token=...``, ``https://hook/x?sig=...``).

The caller's objects are never changed: a mapping or list is copied only when something in
it had to be redacted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final
from urllib.parse import unquote

__all__ = ["DEFAULT_KEYS", "REDACTED", "Redactor", "build_redactor", "may_hold_secrets", "scrub_url_password"]

REDACTED: Final = "[REDACTED]"

#: The keys redacted by default.
DEFAULT_KEYS: Final[frozenset[str]] = frozenset(
    {
        "password",
        "passwd",
        "secret",
        "token",
        "api_key",
        "apikey",
        "authorization",
        "cookie",
        "set_cookie",
        "x_pass_phrase",
        "x_amebo_admin_key",
        "signature",
        "sig",
    }
)

# scheme://user:password@host  ->  scheme://user:[REDACTED]@host
_URL_PASSWORD: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^:/?#@\s]*):([^@/?#\s]*)@")
# ?name=value, &name=value (and ;name=value) in a query string
_QUERY_PARAM: Final = re.compile(r"([?&;])([^=&#?;\s]+)=([^&#;\s\"']*)")
_MAX_DEPTH: Final = 64
_SCALARS: Final = frozenset({int, float, bool, type(None)})


def _normalize(key: str) -> str:
    return key.lower().replace("-", "_").replace(".", "_")


def scrub_url_password(text: str) -> str:
    """*text* with the password of every ``scheme://user:password@`` URL replaced."""
    if "@" not in text or "://" not in text:
        return text
    return _URL_PASSWORD.sub(lambda m: f"{m.group(1)}:{REDACTED}@", text)


def may_hold_secrets(text: str) -> bool:
    """Cheap test: could *text* hold a URL password or a query-string parameter?"""
    return "://" in text or ("=" in text and ("?" in text or "&" in text))


class Redactor:
    """Redacts values of sensitive keys and URL passwords, at any depth of dicts and lists."""

    __slots__ = ("_verdicts", "keys")

    def __init__(self, keys: Iterable[str] = DEFAULT_KEYS) -> None:
        self.keys: frozenset[str] = frozenset(_normalize(k) for k in keys)
        # key -> sensitive?; call sites use few distinct keys, so this stays small.
        self._verdicts: dict[Any, bool] = {}

    def is_sensitive(self, key: Any) -> bool:
        """Whether values under *key* are redacted."""
        verdict = self._verdicts.get(key)
        if verdict is None:
            if isinstance(key, str):
                norm = _normalize(key)
                verdict = norm in self.keys or any(norm.endswith("_" + k) for k in self.keys)
            else:
                verdict = False
            if len(self._verdicts) < 4096:
                self._verdicts[key] = verdict
        return verdict

    def scrub_text(self, text: str) -> str:
        """*text* with URL passwords and sensitive query-string values replaced."""
        if "://" in text:
            text = scrub_url_password(text)
        if "=" in text and ("?" in text or "&" in text):

            def replace(m: re.Match[str]) -> str:
                return f"{m.group(1)}{m.group(2)}={REDACTED}" if self.is_sensitive(unquote(m.group(2))) else m.group(0)

            text = _QUERY_PARAM.sub(replace, text)
        return text

    def scrub_mapping(self, mapping: Mapping[Any, Any], _depth: int = 0) -> Mapping[Any, Any]:
        """*mapping* with sensitive values redacted; *mapping* itself when nothing was."""
        # The common case, checked first: known-safe keys holding numbers or plain text.
        verdicts = self._verdicts
        for key, value in mapping.items():
            if verdicts.get(key) is not False:
                break
            tp = type(value)
            if tp is str:
                if may_hold_secrets(value):
                    break
            elif tp not in _SCALARS:
                break
        else:
            return mapping
        return self._scrub_mapping(mapping, _depth)

    def _scrub_mapping(self, mapping: Mapping[Any, Any], _depth: int) -> Mapping[Any, Any]:
        out: dict[Any, Any] | None = None
        verdicts = self._verdicts
        for key, value in mapping.items():
            sensitive = verdicts.get(key)
            if sensitive is None:
                sensitive = self.is_sensitive(key)
            if sensitive:
                new: Any = REDACTED
            else:
                tp = type(value)
                if tp is str:
                    if not may_hold_secrets(value):
                        continue
                    new = self.scrub_text(value)
                elif tp is int or tp is float or tp is bool or value is None:
                    continue
                else:
                    new = self.scrub(value, _depth + 1)
            if new is not value:
                if out is None:
                    out = dict(mapping)
                out[key] = new
        return mapping if out is None else out

    def scrub(self, value: Any, _depth: int = 0) -> Any:
        """*value* with sensitive parts redacted; *value* itself when nothing was."""
        if _depth > _MAX_DEPTH:
            return value  # the renderer cuts structures this deep anyway
        if isinstance(value, str):
            return self.scrub_text(value) if may_hold_secrets(value) else value
        if isinstance(value, Mapping):
            try:
                return self.scrub_mapping(value, _depth)
            except Exception:  # a broken Mapping: leave it to the renderer's safe fallback
                return value
        if isinstance(value, (list, tuple)):
            items = [self.scrub(v, _depth + 1) for v in value]
            if any(a is not b for a, b in zip(items, value, strict=True)):
                return items
        return value


class _NoRedaction(Redactor):
    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(())

    def scrub_mapping(self, mapping: Mapping[Any, Any], _depth: int = 0) -> Mapping[Any, Any]:
        return mapping

    def scrub(self, value: Any, _depth: int = 0) -> Any:
        return value

    def scrub_text(self, text: str) -> str:
        return text


def build_redactor(spec: bool | Iterable[str] | None, env_value: str | None = None) -> Redactor:
    """The redactor for ``configure_logging(redact=spec)``.

    *spec* is ``False`` (no redaction), ``None`` or ``True`` (the defaults, changed by
    *env_value*, the ``AMEBO_LOG_REDACT`` variable), or names that change the defaults:
    ``"session_id"`` or ``"+session_id"`` adds a key, ``"-cookie"`` removes one.
    """
    if spec is False:
        return _NoRedaction()
    if spec is None or spec is True:
        changes: Iterable[str] = [p for p in (env_value or "").split(",") if p.strip()]
    elif isinstance(spec, str):
        raise TypeError("redact= takes a list of key names, not a string: redact=['session_id', '-cookie']")
    else:
        changes = spec
    keys = set(DEFAULT_KEYS)
    for raw in changes:
        item = raw.strip()
        if item.startswith("-"):
            keys.discard(_normalize(item[1:]))
        elif item:
            keys.add(_normalize(item.removeprefix("+")))
    return Redactor(keys)

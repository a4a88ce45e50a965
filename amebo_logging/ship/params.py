"""Where every option's value comes from, and what it may be.

Each option is taken from the command line, else its ``AMEBO_LOGSHIP_*`` variable, else the
``--config`` file, else its default (click's own order: command line > environment >
``default_map`` > default).  A bad value is a configuration error (exit 3) wherever it came
from, in one line that names where the fix goes: the flag, the variable, or the file and key.
A malformed command line (an unknown option, a missing argument) stays click's usage error
(exit 2).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

import click
from click.core import ParameterSource

from .errors import EXIT_CONFIG, OperatorError

__all__ = [
    "COMPRESSION",
    "ENV_PREFIX",
    "SIZE",
    "EnvOption",
    "Size",
    "config_option",
    "env",
    "human_size",
    "load_config",
]

ENV_PREFIX = "AMEBO_LOGSHIP_"

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)(b?)\s*$", re.IGNORECASE)
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}


def env(name: str) -> str:
    """The variable of an option: ``batch-size`` -> ``AMEBO_LOGSHIP_BATCH_SIZE``."""
    return ENV_PREFIX + name.upper().replace("-", "_")


def human_size(n: int) -> str:
    """``10485760`` -> ``10MiB``; exact binary multiples only, else the number of bytes."""
    for unit, power in (("TiB", 4), ("GiB", 3), ("MiB", 2), ("KiB", 1)):
        if n and n % (1024**power) == 0:
            return f"{n // 1024**power}{unit}"
    return str(n)


class Size(click.ParamType):
    """A size in bytes: ``5000``, ``512KiB``, ``10MiB``, ``1MB`` (decimal), ``4k``."""

    name = "size"

    def __init__(self, minimum: int = 0) -> None:
        self.minimum = minimum

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            n = value
        else:
            m = _SIZE.match(str(value))
            if m is None:
                self.fail(f"{value!r} is not a size: use bytes or a unit, e.g. 5000, 512KiB, 10MiB", param, ctx)
            number, prefix, binary, _b = m.groups()
            n = int(float(number) * (1024 if binary else 1000) ** _POWERS[prefix.lower()])
        if n < self.minimum:
            self.fail(f"{value!r} is less than the minimum, {human_size(self.minimum) or self.minimum}", param, ctx)
        return n


SIZE = Size


class Compression(click.ParamType):
    """``--compress``: ``auto``, ``gzip`` or ``off``; the words a boolean variable or config
    key is written with (``true``, ``1``, ``on``, ``false``, ``0``...) say gzip or off."""

    name = "compression"
    _WORDS: ClassVar[dict[str, str]] = {
        "auto": "auto",
        **dict.fromkeys(("gzip", "true", "1", "on", "yes"), "gzip"),
        **dict.fromkeys(("off", "false", "0", "no", "none"), "off"),
    }

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        if isinstance(value, bool):
            return "gzip" if value else "off"
        found = self._WORDS.get(str(value).strip().lower())
        if found is None:
            self.fail(f"{value!r} is not one of auto, gzip, off", param, ctx)
        return found


COMPRESSION = Compression()


class EnvOption(click.Option):
    """An option with an ``AMEBO_LOGSHIP_*`` variable shown in ``--help``; a list option's
    variable may separate values by commas or blanks; a bad value, from the command line, the
    variable or the config file, is an :class:`OperatorError` (exit 3) naming where it came
    from."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("show_envvar", True)
        super().__init__(*args, **kwargs)
        if self.envvar is None and not self.hidden:
            self.envvar = env(flag_name(self))

    def value_from_envvar(self, ctx: click.Context) -> Any:
        raw = self.resolve_envvar_value(ctx)
        if raw is None:
            return None
        if self.multiple or self.nargs != 1:
            return [part for part in re.split(r"[,\s]+", raw) if part]
        return raw

    def process_value(self, ctx: click.Context, value: Any) -> Any:
        try:
            return super().process_value(ctx, value)
        except click.BadParameter as exc:
            source = ctx.get_parameter_source(self.name) if self.name else None
            if source == ParameterSource.ENVIRONMENT:
                variable = self.envvar if isinstance(self.envvar, str) else ", ".join(self.envvar or ())
                raise OperatorError(EXIT_CONFIG, f"{variable}: {exc.message}") from None
            if source == ParameterSource.DEFAULT_MAP:
                where = ctx.meta.get("amebo_logship.config", "the --config file")
                raise OperatorError(EXIT_CONFIG, f"{where}: {flag_name(self)}: {exc.message}") from None
            if source == ParameterSource.COMMANDLINE:
                raise OperatorError(EXIT_CONFIG, f"--{flag_name(self)}: {exc.message}") from None
            raise


# --- the config file -----------------------------------------------------------------------------


def _key(name: str) -> str:
    return name.strip().replace("_", "-")


def flag_name(param: click.Parameter) -> str:
    """The name an option goes by in variables and config files: its long flag
    (``--es-url`` -> ``es-url``), or an argument's name (``patterns``)."""
    longs = [o[2:] for o in getattr(param, "opts", []) if o.startswith("--")]
    return longs[0] if longs else _key(param.name or "")


def load_config(path: Path, command: str, known: dict[str, str], all_known: Iterable[str]) -> dict[str, Any]:
    """The ``default_map`` for *command* from the TOML file at *path*: top-level keys (those
    that are options of *command*), then the ``[command]`` table's.  Keys are option names
    (``batch-size`` or ``batch_size``); a key no command has is an error."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise OperatorError(EXIT_CONFIG, f"cannot read the config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise OperatorError(EXIT_CONFIG, f"the config file {path} is not valid TOML: {exc}") from None
    known_keys = set(known)
    every_key = {_key(k) for k in all_known}
    commands = {"ship", "check", "setup", "status", "reset-state"}
    merged: dict[str, Any] = {}
    unknown: list[str] = []
    for key, value in data.items():
        if _key(key) in commands:
            if not isinstance(value, dict):
                raise OperatorError(EXIT_CONFIG, f"{path}: [{_key(key)}] must be a table")
            continue
        if _key(key) not in every_key:
            unknown.append(_key(key))
        elif _key(key) in known_keys:
            merged[_key(key)] = value
    for key, value in (data.get(command) or {}).items():
        if _key(key) not in known_keys:
            unknown.append(f"[{command}] {_key(key)}")
        else:
            merged[_key(key)] = value
    if unknown:
        raise OperatorError(
            EXIT_CONFIG,
            f"{path}: unknown key{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(sorted(unknown))}: the keys are option names of "
            f"`{command}`: {', '.join(sorted(known_keys))}",
        )
    return {known[k]: v for k, v in merged.items()}


def config_option(command: str) -> Any:
    """``--config FILE``: option defaults from a TOML file (eager, so it comes first)."""

    def load(ctx: click.Context, _param: click.Parameter, value: Path | None) -> None:
        if value is None:
            return
        params = {flag_name(p): p.name for p in ctx.command.params if p.name and p.name != "config"}
        every: set[str] = set(params)
        group = ctx.parent.command if ctx.parent is not None else None
        for sub in getattr(group, "commands", {}).values():
            every.update(flag_name(p) for p in sub.params if p.name)
        ctx.meta["amebo_logship.config"] = str(value)
        loaded = load_config(value, command, params, every)
        for p in ctx.command.params:  # `es-url = "http://..."` for a list of one, as people write it
            if (
                p.name in loaded
                and (getattr(p, "multiple", False) or p.nargs == -1)
                and isinstance(loaded[p.name], str)
            ):
                loaded[p.name] = [loaded[p.name]]
        ctx.default_map = {**(ctx.default_map or {}), **loaded}

    return click.option(
        "--config",
        cls=EnvOption,  # a bad value (a directory) is exit 3, as an unreadable file is
        type=click.Path(path_type=Path, dir_okay=False),
        is_eager=True,
        expose_value=False,
        callback=load,
        envvar=env("config"),
        show_envvar=True,
        help="TOML file of option values (keys are option names; a [" + command + "] table "
        "applies to this command only).",
    )

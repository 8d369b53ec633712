"""Render qemu-configs/ templates into argv lists (pure: text in, list out)."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

from colopp.errors import ConfigError

_PLACEHOLDER = re.compile(r"\{([a-z_0-9]+)\}")


def configs_dir() -> Path:
    """Where the templates live: ``$COLOPP_QEMU_CONFIGS``, the source tree's folder, or
    (installed from a wheel) ``<prefix>/share/colopp/qemu-configs``."""
    override = os.environ.get("COLOPP_QEMU_CONFIGS")
    if override:
        return Path(override)
    source = Path(__file__).resolve().parents[2] / "qemu-configs"
    installed = Path(sys.prefix) / "share" / "colopp" / "qemu-configs"
    return source if source.is_dir() or not installed.is_dir() else installed


def placeholders(template: str) -> set[str]:
    """Names of the placeholders a template uses."""
    return set(_PLACEHOLDER.findall(template))


def _substitute(arg: str, values: Mapping[str, object], where: str) -> str:
    whole = _PLACEHOLDER.fullmatch(arg) is not None

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise ConfigError(f"{where}: no value for {{{name}}}")
        text = str(values[name])
        if "\n" in text or "\0" in text:
            raise ConfigError(f"{where}: {{{name}}} contains a newline or NUL")
        # Inside a QEMU option list a comma starts the next option: refuse it.
        if not whole and "," in text:
            raise ConfigError(f"{where}: {{{name}}}={text!r} may not contain ','")
        return text

    return _PLACEHOLDER.sub(one, arg)


def render(template: str, values: Mapping[str, object], name: str = "template") -> list[str]:
    """Turn a template into argv: each line ``-option value`` gives two elements.

    Raises:
        ConfigError: a placeholder has no value, or a value would change the option list.
    """
    argv: list[str] = []
    for lineno, raw in enumerate(template.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{name}:{lineno}"
        option, _, value = line.partition(" ")
        if not option.startswith("-"):
            raise ConfigError(f"{where}: expected '-option value', got {line!r}")
        argv.append(option)
        if value.strip():
            argv.append(_substitute(value.strip(), values, where))
    return argv


def render_files(
    names: list[str], values: Mapping[str, object], folder: Path | None = None
) -> list[str]:
    """Render several templates from ``folder`` (default :func:`configs_dir`) in order.

    Raises:
        ConfigError: a template is missing or cannot be rendered.
    """
    base = folder or configs_dir()
    argv: list[str] = []
    for name in names:
        path = base / name
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read QEMU template {path}: {exc.strerror}") from exc
        argv += render(text, values, name)
    return argv

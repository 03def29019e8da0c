"""Typed, strict settings that round-trip to JSON and are saved beside every artifact.

Every settings class in rhoprop is a frozen dataclass deriving from :class:`Settings`: unknown keys
are rejected by :meth:`Settings.from_dict` (no silent acceptance of misspelled options) and
:meth:`Settings.to_dict` gives plain JSON types.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar, Self, get_type_hints

from rhoprop.errors import SettingsError


@dataclasses.dataclass(frozen=True)
class Settings:
    """Base class: strict dict/JSON round trip for frozen dataclasses."""

    #: Fields added after results were cached under keys hashed from these settings, each with
    #: the value that was in effect before it existed: while a field holds that value
    #: :meth:`key_dict` leaves it out, so those results keep their keys (also if the field's
    #: default changes later: the value here, not the default, decides).
    LATE_FIELDS: ClassVar[dict[str, Any]] = {}

    def key_dict(self) -> dict[str, Any]:
        """:meth:`to_dict` for cache keys: as it, without the :data:`LATE_FIELDS` that hold their
        earlier value (nested settings likewise). A new option therefore leaves every earlier
        result's key, and a study or benchmark that spans sessions, as it was, while a result
        computed with another value gets a key of its own."""
        out = self.to_dict()
        for name, before in self.LATE_FIELDS.items():
            if getattr(self, name) == before:
                del out[name]
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Settings) and f.name in out:
                out[f.name] = value.key_dict()
        return out

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as a dict of plain JSON types (tuples become lists)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Settings):
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Build settings from a dict, rejecting unknown keys with the list of valid ones."""
        if not isinstance(data, dict):
            raise SettingsError(
                f"{cls.__name__}.from_dict expects a dict, got {type(data).__name__}"
            )
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise SettingsError(
                f"{cls.__name__}: unknown key(s) {unknown}; valid keys are {sorted(names)}"
            )
        hints = get_type_hints(cls)
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            hint = hints.get(key)
            if isinstance(hint, type) and issubclass(hint, Settings) and isinstance(value, dict):
                value = hint.from_dict(value)
            elif isinstance(value, list):
                value = tuple(value)
            kwargs[key] = value
        return cls(**kwargs)

    def to_json(self, path: str | os.PathLike[str]) -> None:
        """Write the settings to ``path`` as indented JSON, atomically."""
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> Self:
        """Read settings written by :meth:`to_json`."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise SettingsError(f"cannot read {cls.__name__} from {path}: {exc}") from exc
        return cls.from_dict(data)


def is_int(value: object) -> bool:
    """True for an int that is not a bool (``True`` is not a count of epochs)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """True for an int or float that is not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_fields(owner: str, checks: Iterable[tuple[bool, str, object]]) -> None:
    """Raise SettingsError ``"<owner>.<what>, got <value>"`` for the first check that failed.

    Each check is ``(ok, what, got)``: ``what`` names the field and what it must be (``"epochs
    must be an int >= 1"``), ``got`` is the value found; ``owner`` is the settings class's name.
    """
    for ok, what, got in checks:
        if not ok:
            raise SettingsError(f"{owner}.{what}, got {got!r}")


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Text variant of :func:`atomic_write_bytes` (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))

"""Text a submitter chose (model names) or that came out of their file (error messages).

Such text reaches other people's terminals and file systems: a name becomes part of a download's
file name, and every listing prints it. Names are checked once at submit (``check_model_name``)
and made safe again where they are used (``file_name_part``, ``printable``), because rows written
before the check, or by other clients, may still hold anything.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

MAX_NAME_LENGTH = 200

# Characters that move the cursor, recolour the screen or reorder what follows (C0/C1 controls,
# DEL, and the Unicode format characters behind bidirectional "Trojan source" text).
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff]")
# What a file name may contain besides letters and digits.
_FILE_NAME_UNSAFE = re.compile(r"[^\w.+=@,-]", re.ASCII)


class UnsafeNameError(ValueError):
    """A model name that could not be shown or used as a file name as it is."""


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with every control and formatting character written as a visible escape
    (ESC becomes ``\\x1b``), so that it cannot drive the terminal it is printed on."""
    if keep_newlines:
        return "\n".join(_UNPRINTABLE.sub(_escape, line) for line in text.split("\n"))
    return _UNPRINTABLE.sub(_escape, text)


def check_model_name(name: str) -> str:
    """``name`` itself when it is a safe display name, else ``UnsafeNameError`` saying why."""
    if not name.strip():
        raise UnsafeNameError("a model name cannot be empty")
    if len(name) > MAX_NAME_LENGTH:
        raise UnsafeNameError(f"a model name has at most {MAX_NAME_LENGTH} characters")
    if _UNPRINTABLE.search(name) or any(unicodedata.category(c) == "Cc" for c in name):
        raise UnsafeNameError(f"model name {printable(name)!r} contains control characters")
    if "/" in name or "\\" in name or name.startswith(".") or ":" in name:
        raise UnsafeNameError(
            f"model name {name!r} cannot contain '/', '\\' or ':' or start with '.': it becomes "
            f"part of a file name when the engine is downloaded; e.g. use {clean_model_name(name)!r}"
        )
    return name


def clean_model_name(name: str, default: str = "model") -> str:
    """A safe display name made from ``name`` (e.g. a file name): unsafe characters become
    ``_``, leading dots go, and an empty result becomes ``default``."""
    cleaned = _UNPRINTABLE.sub("_", name)
    cleaned = re.sub(r"[/\\:]", "_", cleaned).lstrip(". ").strip()[:MAX_NAME_LENGTH]
    return cleaned or default


def file_name_part(text: str, default: str = "model") -> str:
    """``text`` reduced to characters that are safe in a file name on every platform, never
    starting with a dot and never a path: ``../../etc/passwd`` becomes ``etc_passwd``."""
    cleaned = unicodedata.normalize("NFKC", text)
    cleaned = _FILE_NAME_UNSAFE.sub("_", cleaned)
    cleaned = re.sub(r"_{2,}", "_", cleaned).strip("._-")[:MAX_NAME_LENGTH]
    return cleaned or default


def read_bounded(path: Path, max_bytes: int, what: str, limit: str, shown: str | None = None) -> bytes:
    """A submitted file's bytes, which must be fewer than ``max_bytes``: a file at or over it is
    refused before anything is read, and one that grows (or reports no size, like those under
    /proc) is read only up to the limit. ``what`` names the file in errors ("model file",
    "--validation-data"); ``limit`` says which setting sets the bound; ``shown`` is what errors
    call the file (default: its path)."""
    from orchestrator.errors import InvalidRequestError

    name = shown or str(path)
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise InvalidRequestError(f"{what} {name} is not a file")
        if size >= max_bytes:
            raise InvalidRequestError(f"{what} {name} is {size} bytes, at or over the farm's limit of {max_bytes} bytes ({limit})")
        with path.open("rb") as stream:
            data = stream.read(max_bytes)
    except FileNotFoundError:
        raise InvalidRequestError(f"{what} {name} does not exist") from None
    except OSError as exc:
        raise InvalidRequestError(f"cannot read {what} {name}: {exc.strerror}") from None
    if len(data) >= max_bytes:
        raise InvalidRequestError(f"{what} {name} is {len(data)} bytes or more, at or over the farm's limit of {max_bytes} bytes ({limit})")
    return data


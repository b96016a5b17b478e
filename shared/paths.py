"""The one path guard: every path or URL built from an id, or read off the bus, goes through here.

An id in an event is data from another process, and a record on the bus may come from a
producer that is not the service it claims to be. A submission id ``/home`` joined onto a
run folder with ``pathlib`` *is* ``/home`` (an absolute part replaces the base), and one of
``..`` climbs out of it; either made the harmoniser ``rmtree`` a folder it never owned. So
no module joins an id onto a root by itself: :func:`beneath` joins, and refuses any part
that is absolute, empty, ``.``, ``..``, carries a backslash or a control character, or (on
a local filesystem) whose result resolves, through symlinks too, outside the root.
:func:`inside` checks a whole URL someone handed over (a file's place in the archive) the
same way, against the root it must lie under.

The ids themselves are constrained where they are declared (``shared/events.py``), so a
refusal here means a caller forgot to use those types or a root was misconfigured: either
way nothing is touched.
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path
from typing import overload

MAX_NAME = 255
"""The longest file name, in characters: what local filesystems and S3 keys both take."""


def hidden_characters(text: str) -> bool:
    """Whether ``text`` holds a character a reader does not see as itself: a control
    character (C0 and C1: the terminal's escape introducer U+009B among them), a format
    character (bidirectional overrides such as U+202E, which shows ``exe.gpj`` as
    ``jpg.exe``; zero-width spaces; the BOM), a private-use, surrogate or unassigned code
    point, or a line or paragraph separator. Names and typed text hold none of them."""
    if text.isprintable():  # no character of C* or Zl/Zp is printable: no lookup per character
        return False
    if text.isascii():  # the same answer, without a category lookup per character
        return True
    return any(
        unicodedata.category(c).startswith("C") or unicodedata.category(c) in ("Zl", "Zp") for c in text
    )


URL_SIGNIFICANT = frozenset("?#%")
"""Characters that end or re-read the path of the archive URL a name becomes: ``?`` starts
a query and ``#`` a fragment (so a reader of the URL sees another file), ``%`` starts an
escape (``%2e%2e`` is ``..`` to whatever unquotes it)."""


def file_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a file name in the archive, or None if it can.

    A name becomes one path segment under the submission's folder, on local disks and S3
    alike, so it must not be able to climb out of it or hide: no separators, no ``.``/``..``,
    no leading dot, no drive letters, no control or invisible format characters. The receiver
    asks this of what a region declares, and every event's file names are held to it.
    """
    if not name:
        return "must not be empty"
    if len(name) > MAX_NAME:
        return f"longer than {MAX_NAME} characters"
    if hidden_characters(name):
        return "control characters are not allowed"
    # A name is held to the rules as it is written and as it reads once compatibility
    # characters are folded (NFKC): a full-width solidus or full stop is '/' or '.' to
    # anything downstream that normalises it.
    for form in dict.fromkeys((name, unicodedata.normalize("NFKC", name))):
        if form in (".", ".."):
            return "path traversal is not allowed"
        if "/" in form or "\\" in form:
            return "path separators are not allowed (absolute paths and traversal included)"
        if ":" in form:
            return "':' is not allowed (drive letters, URL schemes)"
        if URL_SIGNIFICANT & set(form):
            return "'?', '#' and '%' are not allowed (they change the meaning of the file's URL)"
        if form.startswith("."):
            return "must not start with '.'"
        if form != form.strip():
            return "must not start or end with whitespace"
    return None


class PathEscape(ValueError):
    """A path built from untrusted parts would leave its root; nothing was touched."""


def _segments(part: str) -> list[str]:
    if not part:
        raise PathEscape("an empty path part")
    if part.startswith("/"):
        raise PathEscape(f"an absolute path part {part[:80]!r}")
    if "\\" in part or any(unicodedata.category(c) in ("Cc", "Cf") for c in part):
        raise PathEscape(f"a path part with a backslash or a control character {part[:80]!r}")
    segments = part.split("/")
    if any(s in ("", ".", "..") for s in segments):
        raise PathEscape(f"a path part with an empty, '.' or '..' segment {part[:80]!r}")
    return segments


def _local(root: str) -> str | None:
    """The local path of a root that is one (a path or a file:// URL), else None (s3://...)."""
    if root.startswith("file://"):
        return root[len("file://") :]
    if "://" in root:
        return None
    return root


@overload
def beneath(root: Path, *parts: str) -> Path: ...


@overload
def beneath(root: str, *parts: str) -> str: ...


def beneath(root: str | Path, *parts: str) -> str | Path:
    """``root`` with ``parts`` appended (each one segment or a relative path of segments).

    ``root`` is a local :class:`~pathlib.Path`, a local path string or an fsspec URL
    (``file://``, ``s3://``); the result has the same form. Raises :class:`PathEscape`
    rather than return anything that is not strictly below ``root``.
    """
    if not parts:
        raise PathEscape("nothing to put beneath the root")
    base = str(root)
    if not base:
        raise PathEscape("an empty root")
    segments = [s for part in parts for s in _segments(part)]
    local = _local(base)
    if local is not None:
        real_root = os.path.realpath(local)
        real = os.path.realpath(os.path.join(local, *segments))
        if real == real_root or os.path.commonpath([real_root, real]) != real_root:
            raise PathEscape(f"{'/'.join(segments)[:80]!r} resolves outside {base!r}")
    if isinstance(root, Path):
        return root.joinpath(*segments)
    return "/".join([base.rstrip("/"), *segments])


def inside(root: str, url: str) -> str:
    """``url`` itself when it names something strictly below ``root``; else :class:`PathEscape`."""
    prefix = root.rstrip("/") + "/"
    if not url.startswith(prefix):
        raise PathEscape(f"{url[:120]!r} is not under {root!r}")
    beneath(root, url[len(prefix) :])
    return url

"""Batch ``OutputFiles`` patterns: parsing, matching, a walk that never leaves its base directory, and the
``PATTERN[=KIND][@CONDITION]`` output specs of ``run --output`` and :mod:`batchfiles.batch`.

Pattern syntax (the Batch service's): ``*``, ``?``, ``[abc]``, ``[a-c]``, ``[!abc]`` match within a name,
``**`` any number of folders (zero included); names starting with ``.`` match only a pattern segment that
starts with ``.``; ``/`` and ``\\`` separate; ``[*]`` escapes. A pattern is relative to ``base_dir``: ``.``
segments vanish and ``..`` cancels the segment before it; a pattern that climbs above ``base_dir``, is
absolute, or names nothing raises :class:`ValueError`.

The walk (``os.scandir``; one ``scandir`` per folder visit, each pattern segment compiled to a regex):

- a symlink to a folder is followed only when its resolved target lies inside ``base_dir``'s resolved path;
- each real folder (``st_dev``, ``st_ino``) is entered at most once per walk, so link loops end and no
  folder's files are listed twice; folders reached without a link win over those reached through one
  (links are followed in later rounds, fewest links first), and a link back to a folder already walked
  leads nowhere. Without links every folder has one path, and is entered with every pattern position
  that reaches it at once (the pattern runs as a set of positions, like an NFA), so nothing is missed;
- a matched file, or file symlink, whose real path lies outside ``base_dir`` is skipped with a warning on
  the ``batchfiles`` logger, as is a folder link that leads outside; broken links are skipped;
- results are sorted, and each path is listed once;
- each path found is a :class:`Walked` that knows the file (device, inode) it led to: a save opens it and
  refuses a path that leads elsewhere by then (a folder swapped for a link to outside after the walk).
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Union

from .kinds import OutputKind, parse_kind

PathLike = Union[str, "os.PathLike[str]"]
#: (device, inode): which file a path led to.
Identity = tuple[int, int]

logger = logging.getLogger("batchfiles")

#: ``**`` as a whole segment: any number of folders.
RECURSIVE = "**"
_MAGIC = re.compile(r"[*?[]")
_FLAGS = re.IGNORECASE if sys.platform == "win32" else 0
_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class _Segment:
    """One ``/``-separated part of a pattern: ``**``, or a name pattern compiled to a regex."""

    text: str
    regex: re.Pattern[str] | None  # None for ``**``

    @property
    def recursive(self) -> bool:
        return self.regex is None

    def matches(self, name: str) -> bool:
        """Does ``name`` match? Dot-names only where the segment starts with a dot; ``**`` skips them."""
        if name.startswith(".") and not self.text.startswith("."):
            return False
        return self.regex is None or self.regex.match(name) is not None


def is_pattern(text: str) -> bool:
    """Has ``text`` a wildcard (``*``, ``?`` or ``[``)?"""
    return _MAGIC.search(text) is not None


def parse(pattern: str) -> list[_Segment]:
    """The segments of ``pattern``, normalised; :class:`ValueError` naming it if it is not usable."""
    if not isinstance(pattern, str) or not pattern:
        raise ValueError(f"a file pattern must be a non-empty str, not {pattern!r}")
    if "\x00" in pattern:
        raise ValueError(f"pattern {pattern!r} has a NUL character")
    text = pattern.replace("\\", "/")
    if text.startswith("/") or (sys.platform == "win32" and _DRIVE.match(text)):
        raise ValueError(f"pattern {pattern!r} is absolute: patterns are relative to base_dir")
    parts: list[str] = []
    for part in text.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise ValueError(
                    f"pattern {pattern!r} climbs above base_dir: "
                    "patterns are relative to base_dir and may not climb above it"
                )
            parts.pop()
        elif not (part == RECURSIVE and parts and parts[-1] == RECURSIVE):  # ``**/**`` is ``**``
            parts.append(part)
    if not parts:
        raise ValueError(f"pattern {pattern!r} names no file once '.' and '..' are resolved")
    return [
        _Segment(part, None if part == RECURSIVE else re.compile(fnmatch.translate(part), _FLAGS))
        for part in parts
    ]


def expand(
    patterns: str | Iterable[str], base_dir: PathLike, *, warned: set[object] | None = None
) -> list[tuple[str, str]]:
    """(local path, path relative to ``base_dir`` with ``/``) of every file the patterns match.

    All patterns are parsed before anything is walked. Files come in the order of the patterns, each
    pattern's sorted by path; a file matched by several patterns is listed once. Each link skipped is
    warned of once per call, or once for all the calls sharing a ``warned`` set.
    """
    if isinstance(patterns, str):
        patterns = [patterns]
    patterns = list(patterns)
    base = os.fspath(base_dir)
    parsed = [parse(pattern) for pattern in patterns]
    if not os.path.isdir(base):
        raise FileNotFoundError(f"base_dir {base!r} is not a directory")
    found: dict[str, Identity] = {}
    warned = set() if warned is None else warned  # one warning per link, whichever patterns meet it
    for segments in parsed:
        for rel, identity in _Walk(base, segments, warned).run():
            found.setdefault(rel, identity)
    return [(Walked(local_path(base, rel), identity), rel) for rel, identity in found.items()]


class Walked(str):
    """A local path a walk found, with the identity (device, inode) of the file it led to then."""

    identity: Identity

    def __new__(cls, path: str, identity: Identity) -> Walked:
        walked = super().__new__(cls, path)
        walked.identity = identity
        return walked


def check_opened(path: PathLike, opened: Identity | None) -> None:
    """Refuse to save a walked ``path`` whose file, as just opened, is not the one the walk found: a folder
    on the way was replaced (by a link to outside ``base_dir``, say) since. Other paths are not checked."""
    expected = getattr(path, "identity", None)
    if expected is not None and opened is not None and opened != expected:
        raise OSError(f"{os.fspath(path)!r} leads to another file than when it was found: not saved")


def local_path(base: str, rel: str) -> str:
    """The local path of ``rel`` (``/``-separated) under ``base``; just ``rel`` under ``.``."""
    native = rel.replace("/", os.sep)
    return native if base in ("", ".") else os.path.join(base, native)


def _inside(real: str, root: str) -> bool:
    return real == root or real.startswith(root if root.endswith(os.sep) else root + os.sep)


_DIR, _FILE, _SKIP = "dir", "file", "skip"


@dataclass
class _Visit:
    """A folder to list: its path, its path relative to the base, and the pattern positions it is at."""

    path: str
    rel: str
    states: frozenset[int]


class _Walk:
    """One pattern's walk of ``base``; see the module docstring for its rules."""

    def __init__(self, base: str, segments: list[_Segment], warned: set[object]) -> None:
        self.base, self.segments, self.warned = base, segments, warned
        self.root = os.path.realpath(base)
        self.entered: set[tuple[int, int]] = set()  # (st_dev, st_ino) of the folders walked
        self.found: dict[str, Identity] = {}

    def run(self) -> list[tuple[str, Identity]]:
        """(relative path, identity) of the matching files, sorted by path."""
        todo = [_Visit(self.base, "", self._closure({0}))]
        while todo:  # one round per number of folder links followed
            links: list[_Visit] = []
            while todo:
                visit = todo.pop()
                children = self._visit(visit, links)
                todo.extend(reversed(children))  # depth first, in name order
            todo = sorted(links, key=lambda v: v.rel, reverse=True)  # popped in name order
        return sorted(self.found.items())

    def _closure(self, states: Iterable[int]) -> frozenset[int]:
        """``states`` and the positions after each ``**`` (which may match no folder at all)."""
        out = set(states)
        for state in sorted(out):
            if self.segments[state].recursive and state + 1 < len(self.segments):
                out.add(state + 1)
        return frozenset(out)

    def _visit(self, visit: _Visit, links: list[_Visit]) -> list[_Visit]:
        """List one folder: record its matching files; return the real folders to go on with, and add the
        folder links (inside the base) to ``links``."""
        try:
            st = os.stat(visit.path)
        except OSError as err:
            self._warn(visit.path, f"cannot read {visit.rel!r}: {err.strerror or err}")
            return []
        if (st.st_dev, st.st_ino) in self.entered:
            logger.debug("not walking %s again: its folder was walked already", visit.rel)
            return []
        self.entered.add((st.st_dev, st.st_ino))
        states = visit.states
        try:
            with os.scandir(visit.path) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as err:
            if not visit.rel:
                raise
            self._warn((st.st_dev, st.st_ino), f"cannot read {visit.rel!r}: {err.strerror or err}")
            return []
        last = len(self.segments) - 1
        children: list[_Visit] = []
        for entry in entries:
            file_match, next_states = False, set()
            for state in states:
                segment = self.segments[state]
                if not segment.matches(entry.name):
                    continue
                if state == last:
                    file_match = True
                if segment.recursive:
                    next_states.add(state)
                elif state < last:
                    next_states.add(state + 1)
            if not file_match and not next_states:
                continue
            rel = f"{visit.rel}/{entry.name}" if visit.rel else entry.name
            kind, is_link = self._kind(entry, rel)
            if (kind == _FILE and file_match) or (kind == _DIR and next_states):
                if is_link and not self._inside(entry, rel, (st.st_dev, st.st_ino, entry.name)):
                    continue
                if kind == _FILE:
                    try:
                        found = entry.stat()  # follows a file link (checked inside above)
                    except OSError:  # gone since it was listed
                        continue
                    self.found[rel] = (found.st_dev, found.st_ino)
                else:
                    child = _Visit(entry.path, rel, self._closure(next_states))
                    (links if is_link else children).append(child)
        return children

    @staticmethod
    def _kind(entry: os.DirEntry[str], rel: str) -> tuple[str, bool]:
        """(file, folder or skip; is a symlink) of an entry; a link counts as what it leads to."""
        try:
            if not entry.is_symlink():
                if entry.is_dir(follow_symlinks=False):
                    return _DIR, False
                return (_FILE if entry.is_file(follow_symlinks=False) else _SKIP), False
            if entry.is_dir():  # follows the link; False for a broken one
                return _DIR, True
            if entry.is_file():
                return _FILE, True
        except OSError:  # a loop of links, or no permission
            pass
        logger.debug("skipped %s: a broken link, or not a regular file", rel)
        return _SKIP, True

    def _inside(self, entry: os.DirEntry[str], rel: str, key: object) -> bool:
        """Does the link ``entry`` lead inside the base? If not, warn (once per ``key``: the id of its
        folder and its name)."""
        if _inside(os.path.realpath(entry.path), self.root):
            return True
        self._warn(key, f"skipped {rel}: it links outside base_dir {self.base!r}")
        return False

    def _warn(self, key: object, message: str) -> None:
        if key not in self.warned:
            self.warned.add(key)
            logger.warning("%s", message)


# --- output specs: PATTERN[=KIND][@CONDITION] ---------------------------------------------------------------

#: When an output is saved: the command exited with 0, with anything else, or either way.
CONDITIONS = ("success", "failure", "completion")


@dataclass(frozen=True)
class OutputSpec:
    """Files to save when a command exits: ``batchfiles run --output`` and the Batch service's OutputFiles
    (:func:`batchfiles.batch.output_files`).

    ``pattern``: an OutputFiles pattern; ``kind``: a kind's text or an :class:`~batchfiles.OutputKind` (a
    ``JobOutputKind`` saves to the job's outputs); ``condition``: ``success``, ``failure`` or ``completion``.
    """

    pattern: str
    kind: str | OutputKind = "TaskOutput"
    condition: str = "completion"

    def __post_init__(self) -> None:
        if not isinstance(self.pattern, str) or not self.pattern:
            raise ValueError(f"an output's pattern must be a non-empty str, not {self.pattern!r}")
        segments = re.split(r"[/\\]", self.pattern)
        if dotted := next((s for s in segments if s.endswith(".") and s not in (".", "..")), None):
            raise ValueError(
                f"pattern {self.pattern!r} has a segment ending in '.' ({dotted!r}): Azure Blob storage "
                "drops a segment's trailing dots, so its files would be saved under other names"
            )
        if isinstance(self.kind, str):
            object.__setattr__(self, "kind", parse_kind(self.kind))
        elif not isinstance(self.kind, OutputKind):
            raise TypeError(
                f"an output's kind must be a str or an OutputKind, not {type(self.kind).__name__}"
            )
        if self.condition not in CONDITIONS:
            raise ValueError(f"unknown condition {self.condition!r}: use success, failure or completion")

    def applies(self, exit_code: int) -> bool:
        """Does the condition hold for a command that exited with ``exit_code``?"""
        if self.condition == "success":
            return exit_code == 0
        if self.condition == "failure":
            return exit_code != 0
        return True

    def __str__(self) -> str:
        return f"{self.pattern}={self.kind}@{self.condition}"


def parse_spec(text: str) -> OutputSpec:
    """``PATTERN[=KIND][@CONDITION]``: the last ``@`` starts the condition, the last ``=`` the kind (outside
    ``[...]``: a literal ``@`` or ``=`` in a file name is ``[@]``, ``[=]``); :class:`ValueError` if unusable.
    The pattern itself is checked where it is used (a walk, or the Batch service's OutputFiles)."""
    rest, condition = text, "completion"
    at = _last_outside_brackets(rest, "@")
    if at >= 0:
        rest, condition = rest[:at], rest[at + 1 :]
        if condition.lower() not in CONDITIONS:
            raise ValueError(
                f"unknown condition {condition!r} in {text!r}: use success, failure or completion "
                "(to match a '@' in a file name, write [@])"
            )
        condition = condition.lower()
    kind = "TaskOutput"
    equals = _last_outside_brackets(rest, "=")
    if equals >= 0:
        rest, kind = rest[:equals], parse_kind(rest[equals + 1 :])
    if not rest:
        raise ValueError(f"no file pattern in {text!r}")
    return OutputSpec(rest, kind, condition)


def _last_outside_brackets(text: str, char: str) -> int:
    """The index of the last ``char`` not inside a ``[...]`` set of the pattern, or -1."""
    found, inside = -1, False
    for index, c in enumerate(text):
        if inside:
            inside = c != "]"
        elif c == "[":
            inside = True
        elif c == char:
            found = index
    return found


# --- two name patterns: a name both match ---------------------------------------------------------------

_STAR = "*"


def _tokens(segment: str) -> list[str]:
    """``segment`` (one name pattern) as its tokens, read as :func:`fnmatch.translate` reads it: ``*``, and
    one-character tokens (``?``, a ``[...]`` set, or a literal character)."""
    tokens: list[str] = []
    i, n = 0, len(segment)
    while i < n:
        c = segment[i]
        if c == "[":
            j = i + 1
            j += 1 if j < n and segment[j] == "!" else 0
            j += 1 if j < n and segment[j] == "]" else 0
            end = segment.find("]", j)
            if end >= 0:
                tokens.append(segment[i : end + 1])
                i = end + 1
                continue
        if not (c == _STAR and tokens and tokens[-1] == _STAR):
            tokens.append(c)
        i += 1
    return tokens


def common_name(first: str, second: str) -> str | None:
    """A file name that both name patterns (one ``/``-free segment each, ``**`` not included) match, the
    rule for dot-names included (a name starting with ``.`` only where the pattern starts with one); None
    if there is none. Exact: the two patterns are walked together (the product of their automata), trying
    the characters where a set or a literal of either begins or ends, and two no set names."""
    a, b = _tokens(first), _tokens(second)
    matchers = {t: re.compile(fnmatch.translate(t), _FLAGS) for t in {*a, *b} if t != _STAR}
    chars = {"a", "\ue000"}
    for c in first + second:
        chars.update(chr(o) for o in (ord(c) - 1, ord(c), ord(c) + 1) if 0 < o < 0x110000)
    usable = (c for c in chars if c != "/" and not 0xD800 <= ord(c) <= 0xDFFF)
    candidates = sorted(usable, key=lambda c: (not c.isalnum(), c))  # a readable example first
    dot_ok = first.startswith(".") and second.startswith(".")

    def steps(tokens: list[str], i: int, c: str) -> list[int]:
        if i == len(tokens):
            return []
        if tokens[i] == _STAR:
            return [i]
        return [i + 1] if matchers[tokens[i]].match(c) else []

    def closure(i: int, tokens: list[str]) -> list[int]:
        out = [i]
        while out[-1] < len(tokens) and tokens[out[-1]] == _STAR:
            out.append(out[-1] + 1)
        return out

    # Breadth-first over (position in a, position in b, any character read yet), keeping the name read
    # so far for each state: the first name found is one of the shortest.
    Start = tuple[int, int, bool]
    start: list[Start] = [(i, j, False) for i in closure(0, a) for j in closure(0, b)]
    seen: dict[Start, str] = dict.fromkeys(start, "")
    todo = start
    while todo:
        following: list[Start] = []
        for i, j, started in todo:
            name = seen[(i, j, started)]
            for c in candidates:
                if not started and c == "." and not dot_ok:
                    continue
                for i2 in steps(a, i, c):
                    for j2 in steps(b, j, c):
                        for x in closure(i2, a):
                            for y in closure(j2, b):
                                if (x, y, True) in seen:
                                    continue
                                seen[(x, y, True)] = name + c
                                if (x, y) == (len(a), len(b)):
                                    return name + c
                                following.append((x, y, True))
        todo = following
    return None

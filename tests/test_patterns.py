"""OutputFiles patterns and the walk (batchfiles._patterns), and the planner's name checks (_saving), on disk.

No storage here: test_storage*.py and test_cli_transfer.py check that the uploads follow these plans.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import string
import time
from pathlib import Path

import pytest
import reference_naming as ref
from batchfiles import _patterns, _saving, _scope, naming
from batchfiles._cli.save import files_to_save
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

BOUNDED = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def make(root: Path, *files: str) -> None:
    for rel in files:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(rel)


def rels(patterns, base) -> list[str]:
    return [rel for _, rel in _patterns.expand(patterns, base)]


# --- patterns -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern", ["../*.txt", "a/../../x", "..", "..\\x", "./../x", "**/../../x", "a/b/../../../c"]
)
def test_a_pattern_climbing_above_base_dir_is_refused(pattern, tmp_path):
    with pytest.raises(ValueError, match="may not climb above it") as err:
        _patterns.expand(["ok/*", pattern], tmp_path)
    assert repr(pattern) in str(err.value)


@pytest.mark.parametrize("pattern", ["/etc/*", "\\x", "/"])
def test_an_absolute_pattern_is_refused(pattern, tmp_path):
    with pytest.raises(ValueError, match="absolute"):
        _patterns.expand(pattern, tmp_path)


@pytest.mark.parametrize("pattern", [".", "a/..", "./", "", "x\x00"])
def test_a_pattern_naming_nothing_is_refused(pattern, tmp_path):
    with pytest.raises(ValueError, match="pattern"):
        _patterns.expand(pattern, tmp_path)


def test_dots_vanish_and_dot_dot_cancels_a_segment(tmp_path):
    make(tmp_path, "b/x.txt", "a/y.txt")
    assert rels("a/../b/*.txt", tmp_path) == ["b/x.txt"]
    assert rels("./b//./*.txt", tmp_path) == ["b/x.txt"]
    assert rels("b\\*.txt", tmp_path) == ["b/x.txt"]


def test_output_files_wildcards(tmp_path):
    make(tmp_path, "a.png", "b.png", "c.txt", ".hidden.png", "sub/d.png", "sub/deep/e.png", ".h/f.png")
    make(tmp_path, "f1.log", "f2.log", "star*.txt", "starX.txt", "a:b")
    assert rels(["*.png", "**/*.png"], tmp_path) == ["a.png", "b.png", "sub/d.png", "sub/deep/e.png"]
    assert rels("f[12].log", tmp_path) == rels("f?.log", tmp_path) == ["f1.log", "f2.log"]
    assert rels("[!ab].*", tmp_path) == ["c.txt"]
    assert rels(".*.png", tmp_path) == [".hidden.png"]
    assert rels(".*/*", tmp_path) == [".h/f.png"]
    assert rels("star[*].txt", tmp_path) == ["star*.txt"]
    assert rels("sub/**", tmp_path) == ["sub/d.png", "sub/deep/e.png"]
    assert rels("*:*", tmp_path) == ["a:b"]
    assert rels("sub", tmp_path) == []  # a folder is not a file
    with pytest.raises(FileNotFoundError, match="not a directory"):
        _patterns.expand("*", tmp_path / "missing")


# --- links --------------------------------------------------------------------------------------------------


@pytest.fixture
def linked(tmp_path: Path) -> Path:
    """base/{a.txt, sub/s.txt, d/up -> .., e/up -> .., alias -> sub, linkdir -> ../secret,
    leak.txt -> ../secret/k.txt, inner.txt -> sub/s.txt, broken -> nowhere}; secret/k.txt outside."""
    base = tmp_path / "base"
    make(base, "a.txt", "sub/s.txt", "d/x.txt", "e/y.txt")
    make(tmp_path, "secret/k.txt")
    for link, target in [
        ("d/up", ".."),
        ("e/up", ".."),
        ("alias", "sub"),
        ("linkdir", "../secret"),
        ("leak.txt", "../secret/k.txt"),
        ("inner.txt", "sub/s.txt"),
        ("broken.txt", "nowhere"),
        ("sub/self", "."),
    ]:
        os.symlink(target, base / link)
    return base


def test_the_walk_never_leaves_base_dir(linked, caplog):
    with caplog.at_level(logging.WARNING, logger="batchfiles"):
        found = rels("**/*.txt", linked)
    assert found == ["a.txt", "d/x.txt", "e/y.txt", "inner.txt", "sub/s.txt"]
    warnings = sorted(r.getMessage() for r in caplog.records if r.name == "batchfiles")
    assert warnings == [
        f"skipped leak.txt: it links outside base_dir {str(linked)!r}",
        f"skipped linkdir: it links outside base_dir {str(linked)!r}",
    ]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="batchfiles"):
        assert rels("link*", linked) == []  # a folder where a file is wanted: no warning, nothing lost
    assert caplog.records == []


def test_a_folder_reached_through_a_link_is_walked_once(linked):
    # alias -> sub is not walked again, and neither are the loops back to base
    assert rels(["**/s.txt"], linked) == ["sub/s.txt"]
    assert rels(["sub/**/*.txt"], linked) == ["sub/s.txt"]  # sub/self -> . leads nowhere new
    # a link the pattern names is followed, to a folder inside base_dir not walked yet
    assert rels(["alias/*.txt"], linked) == ["alias/s.txt"]
    # base_dir is walked first, so a link back to it leads nowhere: each walk enters a folder once
    assert rels(["d/up/*.txt"], linked) == rels("d/up/d/up/e/*.txt", linked) == []
    assert rels("d/**/*.txt", linked) == ["d/x.txt"]


def test_a_base_dir_that_is_itself_a_link(linked, tmp_path):
    os.symlink(linked, tmp_path / "via")
    assert rels("**/s.txt", tmp_path / "via") == ["sub/s.txt"]
    assert rels("inner.txt", tmp_path / "via") == ["inner.txt"]


def test_two_loops_end_quickly(tmp_path):
    """Each loop multiplied glob's paths: 20 folders with two loops each took over a minute."""
    for i in range(20):
        make(tmp_path, f"d{i}/f.txt")
        os.symlink("..", tmp_path / f"d{i}/up")
        os.symlink(".", tmp_path / f"d{i}/me")
    start = time.monotonic()
    found = rels("**/*.txt", tmp_path)
    assert time.monotonic() - start < 5
    assert found == sorted(f"d{i}/f.txt" for i in range(20))


# --- properties of the walk ---------------------------------------------------------------------------------

NAMES = ["a", "b", "a.txt", "b.txt", ".h", ".h.txt", "c d", "a\\b.txt", "x[1]"]
DIR_LINKS = ["..", ".", "../..", "../../..", "a", "../a", "/", "OUTSIDE"]
FILE_LINKS = ["a.txt", "../b.txt", "OUTSIDE/secret.txt", "missing"]

node = st.tuples(
    st.lists(st.sampled_from(["a", "b", ".h", "c d"]), max_size=3),  # folders
    st.sampled_from(NAMES),
    st.sampled_from(["file", "file", "dir", "dirlink", "filelink"]),
    st.integers(0, 7),
)
trees = st.lists(node, min_size=1, max_size=14)
pattern_segments = st.sampled_from(
    ["*", "**", "**", "*.txt", "*.txt", "?", "a", "b*", ".*", "[ab]*", "[!a]*", "a?txt", "x[[]1]", "*[\\]*"]
)
#: Checked on every tree, with the generated patterns.
BROAD = ["**", "*", "**/*.txt", "*/*", "**/a*", "a/**", "**/.*", ".*/**", "**/*/*.txt", "[ab]/**/?.txt"]
clean_patterns = st.lists(pattern_segments.filter(lambda s: "\\" not in s), min_size=1, max_size=3).map(
    "/".join
)
patterns = st.lists(
    st.one_of(pattern_segments, st.sampled_from(["..", ".", ""])), min_size=1, max_size=5
).map("/".join)


def build(root: Path, tree, *, links: bool) -> Path:
    """A small tree under root/base from hypothesis' nodes; root/outside holds what links lead out to."""
    base, outside = root / "base", root / "outside"
    make(outside, "secret.txt", "deep/secret.txt")
    base.mkdir()
    for folders, name, kind, choice in tree:
        parent = base
        for folder in folders:  # never through a link: nothing is written outside base
            parent = parent / folder
            if not os.path.lexists(parent):
                parent.mkdir()
            elif parent.is_symlink() or not parent.is_dir():
                break
        else:
            add(parent / name, kind, choice, outside, links)
    return base


def add(path: Path, kind: str, choice: int, outside: Path, links: bool) -> None:
    if os.path.lexists(path):
        return
    if kind == "dir" or (not links and kind == "dirlink"):
        path.mkdir()
    elif kind == "file" or not links:
        path.write_text(path.name)
    elif kind == "dirlink":
        target = DIR_LINKS[choice % len(DIR_LINKS)]
        os.symlink(str(outside) if target == "OUTSIDE" else target, path)
    else:
        target = FILE_LINKS[choice % len(FILE_LINKS)].replace("OUTSIDE", str(outside))
        os.symlink(target, path)


@contextlib.contextmanager
def fresh(tmp_path: Path):
    """A new empty folder for each hypothesis example."""
    folder = tmp_path / f"ex{len(list(tmp_path.iterdir()))}"
    folder.mkdir()
    yield folder


@BOUNDED
@given(tree=trees, pattern_list=st.lists(patterns, min_size=1, max_size=3))
def test_any_walk_ends_inside_base_dir_without_repeats(tmp_path, tree, pattern_list):
    with fresh(tmp_path) as root:
        base = build(root, tree, links=True)
        real_base = os.path.realpath(base)
        start = time.monotonic()
        try:
            found = _patterns.expand(pattern_list, base)
        except ValueError as err:
            assert "pattern" in str(err)
            return
        assert time.monotonic() - start < 5
        relatives = [rel for _, rel in found]
        assert len(set(relatives)) == len(relatives)
        for local, rel in found:
            assert local == os.path.join(base, rel)
            assert os.path.isfile(local)
            real = os.path.realpath(local)
            assert real.startswith(real_base + os.sep), (rel, real)
        for pattern in [*pattern_list, *BROAD]:
            one = _patterns.expand(pattern, base)
            assert [rel for _, rel in one] == sorted(rel for _, rel in one)
            # a folder's files are listed once, whatever links lead to it
            not_links = [os.path.realpath(local) for local, _ in one if not os.path.islink(local)]
            assert len(set(not_links)) == len(not_links)


@BOUNDED
@given(tree=trees, pattern=clean_patterns)
def test_without_links_the_walk_is_glob(tmp_path, tree, pattern):
    with fresh(tmp_path) as root:
        base = build(root, tree, links=False)
        for each in [pattern, *BROAD]:
            expected = sorted(  # a set: glob lists a file twice for '**/**'
                {
                    rel
                    for rel in glob.glob(each, root_dir=base, recursive=True)
                    if os.path.isfile(os.path.join(base, rel))
                }
            )
            assert rels(each, base) == expected, each


# --- names: nothing lost ------------------------------------------------------------------------------------

destinations = st.lists(
    st.sampled_from(["a", "b", "a.txt", "..", ".", "", "x\\y", "c:d", "\x01"]), min_size=1, max_size=4
).flatmap(lambda segs: st.sampled_from(["/", "\\", "//", "/./"]).map(lambda sep: sep.join(segs)))


@settings(max_examples=200, deadline=None)
@given(st.lists(destinations, max_size=8))
def test_the_planner_refuses_iff_two_files_share_a_blob(dests):
    files = [(f"/nonexistent/local{i}", dest) for i, dest in enumerate(dests)]
    expected: dict[str, list[int]] = {}
    bad = []
    for i, dest in enumerate(dests):
        try:
            expected.setdefault(ref.blob_name("TaskOutput", dest, "t1"), []).append(i)
        except ValueError:
            bad.append(i)
    shared = {name: idx for name, idx in expected.items() if len(idx) > 1}
    scope = _scope.Scope("job-x", "t1")
    kept, problems = _saving.name_files(files, lambda dest: scope.blob_name("TaskOutput", dest))
    assert kept == sorted(idx[0] for idx in expected.values() if len(idx) == 1)
    assert len(problems) == len(bad) + len(shared)
    for name, idx in shared.items():
        assert any(name in p and all(repr(files[i][0]) in p for i in idx) for p in problems)
    if bad or shared:
        with pytest.raises(ValueError, match="nothing was saved"):
            _saving.unique_names(files, lambda dest: scope.blob_name("TaskOutput", dest))
    else:
        assert _saving.unique_names(files, lambda dest: scope.blob_name("TaskOutput", dest)) == files


CLI_PATHS = ["x.txt", "./x.txt", "../x.txt", "a/b.txt", "a\\b.txt", "a//b.txt", "a/../x.txt", "*.txt", "a/*"]


@BOUNDED
@given(st.lists(st.sampled_from([*CLI_PATHS, "ABS"]), min_size=1, max_size=5))
def test_cli_save_refuses_iff_two_files_share_a_destination(tmp_path, chosen):
    with fresh(tmp_path) as root:
        make(root, "x.txt", "work/x.txt", "work/a/b.txt", "work/a\\b.txt")
        paths = [str(root / "x.txt") if p == "ABS" else p for p in chosen]
        with contextlib.chdir(root / "work"):
            # the expected plan: every (local file, destination) a path gives, grouped by destination
            given_files = []
            for path in paths:
                if "*" in path:
                    given_files += [(os.path.realpath(p), p) for p in glob.glob(path)]
                else:
                    dest = os.path.basename(path) if os.path.isabs(path) else path
                    given_files.append((os.path.realpath(path), dest))
            groups: dict[str, set[str]] = {}
            for real, dest in given_files:
                groups.setdefault(ref.destination_path(dest), set()).add(real)
            if any(len(reals) > 1 for reals in groups.values()):
                with pytest.raises(ValueError, match="would both be saved as") as err:
                    files_to_save(paths, None)
                assert "\n" not in str(err.value)
            else:
                planned = files_to_save(paths, None)
                assert len(planned) == len(groups)  # each file once: the count is right
                assert {naming.destination_path(dest) for _, dest in planned} == set(groups)


def test_text_that_is_not_a_pattern():
    assert not _patterns.is_pattern("plain/name.txt")
    assert all(_patterns.is_pattern(p) for p in ["*", "a?", "[ab]", "x[*]"])
    assert set(string.ascii_letters).isdisjoint("*?[")

"""The project speaks for itself: no tracked file (README.md aside: its author keeps it) cites an
issue tracker's numbers or a file outside the repository; the design notes are docs/*.md."""
import re
import subprocess

import pytest

from conftest import ROOT

ISSUE_NUMBER = re.compile(r"\bissues? ?#? ?\d+|\bissue #", re.IGNORECASE)
# the design notes as they were named outside the repository, and the directory beside it
OUTSIDE = re.compile(r"\b(PERFORMANCE|ANCHORS|CONTRACT|STYLE)\.md\b|\.\./shared\b")
LEFT_TO_ITS_AUTHOR = {"README.md"}


def tracked_text_files():
    try:
        names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                               check=True).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: no list of tracked files")
    for name in filter(None, names):
        path = ROOT / name
        if name in LEFT_TO_ITS_AUTHOR or not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" not in data[:4096]:          # text, not a PNG or a checkpoint
            yield name, data.decode("utf-8", errors="replace")


def offending_lines(pattern):
    return [f"{name}:{n}: {line.strip()[:100]}" for name, text in tracked_text_files()
            for n, line in enumerate(text.splitlines(), 1) if pattern.search(line)]


def test_no_issue_numbers():
    assert offending_lines(ISSUE_NUMBER) == []


def test_no_references_outside_the_repository():
    assert offending_lines(OUTSIDE) == []


# the samples are split in two so that this file does not hold what it looks for
@pytest.mark.parametrize("head,tail,found", [("see issue", " 7", True), ("Issue", " #14", True),
                                             ("issues", " 3 and 4", True),
                                             ("the issue", " is", False),
                                             ("docs/performance", ".md", False),
                                             ("PERFORMANCE", ".md", True), ("../sha", "red", True)])
def test_the_patterns_catch_what_they_are_for(head, tail, found):
    text = head + tail
    assert bool(ISSUE_NUMBER.search(text) or OUTSIDE.search(text)) is found

"""write_atomic: a reader sees the old file or the new one, and no temp file is left."""

from __future__ import annotations

import json
import os

import pytest

from scaleout.core import files
from scaleout.core.files import write_atomic, write_json_atomic


def test_replaces_the_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "exit.json"
    target.write_text("old")
    write_atomic(target, "new")
    assert target.read_text() == "new"
    assert os.listdir(tmp_path) == ["exit.json"]


def test_json_is_sorted(tmp_path):
    write_json_atomic(tmp_path / "a.json", {"b": 1, "a": 2})
    assert (tmp_path / "a.json").read_text() == json.dumps({"a": 2, "b": 1})


def test_a_failed_rename_keeps_the_old_file_and_removes_the_temp(tmp_path, monkeypatch):
    target = tmp_path / "started.json"
    target.write_text("old")

    def refuse(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, "new")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["started.json"]

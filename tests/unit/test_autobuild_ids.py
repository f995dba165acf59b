"""Build ids: ASCII digits within SQLite's integer range, in the API and in the CLI alike."""
from __future__ import annotations

import argparse

import pytest

from autobuild.cli import build_id as cli_build_id
from autobuild.http import build_id

BAD = ["", "0", "-1", "+1", " 1", "1.0", "1e3", "٣", "１", "𝟏", "9223372036854775808", "9" * 5000, "0x10"]


@pytest.mark.parametrize("text", BAD)
def test_anything_but_an_ascii_id_in_range_is_no_id(text):
    assert build_id(text) is None
    with pytest.raises(argparse.ArgumentTypeError):
        cli_build_id(text)


@pytest.mark.parametrize("text,value", [("1", 1), ("007", 7), ("9223372036854775807", 2 ** 63 - 1)])
def test_ascii_ids_in_range(text, value):
    assert build_id(text) == value == cli_build_id(text)

"""images 0003: the free-text os_type of older images becomes one of the OS families."""

from __future__ import annotations

import importlib

import pytest

guest_metadata = importlib.import_module("images.migrations.0003_guest_metadata")


@pytest.mark.parametrize(
    "old, family",
    [
        ("linux", "linux"),
        ("Linux", "linux"),
        ("Ubuntu 24.04", "linux"),
        ("debian-12", "linux"),
        ("Windows Server 2022", "windows"),
        ("win10", "windows"),
        ("FreeBSD 14", "bsd"),
        ("", "other"),
        ("plan9", "other"),
    ],
)
def test_old_os_type_maps_to_a_family(old, family):
    assert guest_metadata.family_of(old) == family

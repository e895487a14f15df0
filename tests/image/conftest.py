"""Fixtures of the container image tier (see image_support.py): the built image and podman to run it.

`podman` skips every test of the tier with the reason when it cannot run here (IMAGE_TIER=0, not root, no podman,
no image or one built from other sources), and fails instead under IMAGE_TIER=require (what `make test` sets).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for image_support (pytest uses importlib mode)

import image_support


@pytest.fixture(scope="session")
def podman() -> Iterator[image_support.Podman]:
    reason = image_support.unavailable_reason()
    if reason:
        if image_support.switch() == "require":
            pytest.fail(f"IMAGE_TIER=require: {reason}")
        pytest.skip(reason)
    runner = image_support.Podman(image_support.built_image())
    runner.remove_leftovers()
    yield runner
    runner.remove_leftovers()


@pytest.fixture(scope="session")
def image(podman: image_support.Podman) -> image_support.BuiltImage:
    return podman.image


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line on the image tier: why it did not run, or the image and what ran in it."""
    if not any("tests/image/" in str(getattr(item, "fspath", "")) for item in _collected(terminalreporter)):
        return
    reason = image_support.unavailable_reason()
    if reason:
        line = f"NOT RUN: {reason}"
    else:
        image = image_support.built_image()
        line = (
            f"{image.ref} {image.id[:12]}, {image.size_bytes / 1e6:.0f} MB (base {image.base_size_bytes / 1e6:.0f}"
            f" MB), last build {image.build_seconds} s; {len(image_support.RUNS)} operator container run(s)"
        )
        if image_support.REBUILDS:
            line += "; rebuilt at the start of the tier (the sources had changed since `make image`)"
        for run in image_support.RUNS:
            line += f"\n  {run}"
    terminalreporter.write_line(f"container image tier: {line}")


def _collected(terminalreporter: pytest.TerminalReporter) -> list:
    session = getattr(terminalreporter, "_session", None)
    return list(getattr(session, "items", []) or [])

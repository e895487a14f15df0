#!/usr/bin/env python3
"""The image's build context as the container engine sees it: the repository minus what .dockerignore
excludes.

`python3 tools/image/context.py [REPO]` prints one sha256 over the Dockerfile and every file of the context
(path and content). build.sh records it beside the image it built (.tools/image/image.json); the image tests
compare it with the working tree's, so that they never test an image older than the sources (they rebuild it).
`--list` prints the context's files instead. Patterns follow Docker's rules: `*`, `?`, `**`, `!` re-includes,
the last matching line wins, and a pattern that matches a directory excludes what is below it.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from pathlib import Path


def _regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
            continue
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            continue
        out += {"*": "[^/]*", "?": "[^/]"}.get(char, re.escape(char))
        i += 1
    return re.compile(out + "$")


def rules(repo: Path) -> list[tuple[bool, re.Pattern[str]]]:
    """(excludes?, regex) per line of .dockerignore, in order."""
    path = repo / ".dockerignore"
    found = []
    for raw in path.read_text().splitlines() if path.exists() else []:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = os.path.normpath(line[1:] if negate else line).lstrip("/")
        found.append((not negate, _regex(pattern)))
    return found


def excluded(relative: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    parts = relative.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    result = False
    for excludes, regex in patterns:
        if any(regex.match(prefix) for prefix in prefixes):
            result = excludes
    return result


def files(repo: Path) -> list[str]:
    patterns = rules(repo)
    found = []
    for root, dirs, names in os.walk(repo):
        rel_root = os.path.relpath(root, repo)
        dirs[:] = sorted(d for d in dirs if d not in (".git", ".venv", ".tools"))
        for name in names:
            relative = name if rel_root == "." else f"{rel_root}/{name}"
            if not excluded(relative, patterns):
                found.append(relative)
    return sorted(set(found) | {"Dockerfile"})


def digest(repo: Path) -> str:
    total = hashlib.sha256()
    for relative in files(repo):
        total.update(relative.encode() + b"\0")
        total.update(hashlib.sha256((repo / relative).read_bytes()).digest())
    return total.hexdigest()


def main(argv: list[str]) -> int:
    listing = "--list" in argv
    args = [a for a in argv if a != "--list"]
    repo = Path(args[0] if args else Path(__file__).resolve().parents[2])
    print("\n".join(files(repo)) if listing else digest(repo))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

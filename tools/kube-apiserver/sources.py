#!/usr/bin/env python3
"""Print deb-src lines for Debian bookworm (+ -updates, -security) with the URIs this machine's apt uses.

Reads /etc/apt/sources.list and /etc/apt/sources.list.d/*.list|*.sources (one-line and deb822 formats) at run
time, so that no host name is written into the repository. Only entries whose suite is bookworm* are used.
"""

from __future__ import annotations

import glob
import re
import sys

CODENAME = sys.argv[1] if len(sys.argv) > 1 else "bookworm"


def entries():
    """Yield (types, uris, suites, components, signed_by) from every active apt source."""
    files = ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]
    for path in files:
        try:
            text = open(path, encoding="utf-8").read()
        except OSError:
            continue
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            options = {}
            match = re.match(r"^(deb(?:-src)?)\s+\[([^\]]*)\]\s+(.*)$", line)
            if match:
                kind, opts, rest = match.groups()
                for opt in opts.split():
                    if "=" in opt:
                        key, value = opt.split("=", 1)
                        options[key.lower()] = value
            else:
                kind, _, rest = line.partition(" ")
            parts = rest.split()
            if kind not in ("deb", "deb-src") or len(parts) < 2:
                continue
            yield [kind], [parts[0]], [parts[1]], parts[2:], options.get("signed-by")
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        try:
            text = open(path, encoding="utf-8").read()
        except OSError:
            continue
        for stanza in re.split(r"\n\s*\n", text):
            fields: dict[str, str] = {}
            key = None
            for raw in stanza.splitlines():
                if raw.lstrip().startswith("#"):
                    continue
                if raw[:1] in (" ", "\t") and key:
                    fields[key] += " " + raw.strip()
                    continue
                if ":" in raw:
                    key, value = raw.split(":", 1)
                    key = key.strip().lower()
                    fields[key] = value.strip()
            if fields.get("enabled", "yes").lower() == "no" or "uris" not in fields:
                continue
            yield (
                fields.get("types", "").split(),
                fields["uris"].split(),
                fields.get("suites", "").split(),
                fields.get("components", "").split(),
                fields.get("signed-by"),
            )


def main() -> int:
    lines: list[str] = []
    for _types, uris, suites, components, signed_by in entries():
        if "main" not in components:
            continue
        for uri in uris:
            for suite in suites:
                if suite != CODENAME and not suite.startswith(CODENAME + "-"):
                    continue
                opts = f"[signed-by={signed_by}] " if signed_by and signed_by.startswith("/") else ""
                line = f"deb-src {opts}{uri} {suite} main"
                if line not in lines:
                    lines.append(line)
    if not lines:
        print(f"no apt source for {CODENAME} found in /etc/apt/sources.list*", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

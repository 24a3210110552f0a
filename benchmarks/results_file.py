"""RESULTS.md: replace one benchmark's section (from its "## " heading to the next), or append it."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def write_section(heading: str, text: str) -> None:
    """Put ``text`` (which starts with ``heading``) in place of the section with that heading."""
    current = RESULTS.read_text()
    start = current.find(heading)
    if start < 0:
        RESULTS.write_text(current.rstrip() + "\n\n" + text.rstrip() + "\n")
        return
    end = current.find("\n## ", start + len(heading))
    RESULTS.write_text(current[:start] + text.rstrip() + "\n" + ("" if end < 0 else current[end:]))

"""What every command-line test checks of a refused input: one error line on stderr, no traceback."""

from __future__ import annotations


def one_error_line(capsys) -> str:
    """The single ``needleplan: error: ...`` line the command printed (asserts there is exactly one)."""
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("needleplan: error: "), captured.err
    assert "Traceback" not in captured.err
    return lines[0]

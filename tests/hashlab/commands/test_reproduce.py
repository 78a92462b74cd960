"""`hashlab reproduce` passes every argument to `python -m analysis.reproduce`."""

from __future__ import annotations

import pytest

from hashlab.cli import main


def test_help_and_errors_pass_through(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["reproduce", "--help"])
    assert e.value.code == 0 and "usage: hashlab reproduce" in capsys.readouterr().out
    assert main(["reproduce", "--profile", "nope", "--out", str(tmp_path / "x")]) == 2
    assert "unknown profile 'nope'" in capsys.readouterr().err

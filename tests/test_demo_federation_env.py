"""``make run-federation``'s deployments see the shell's settings of the server's timing only:
never another deployment's database or directory (docs/federation.md#two-district-demo)."""

from __future__ import annotations

from pathlib import Path

import pytest

from demo.federation import deployments


def test_each_deployment_keeps_the_timing_settings_and_nothing_else_of_the_shell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIMEBANK_DATABASE_URL", "sqlite:////elsewhere/timebank.db")
    monkeypatch.setenv("TIMEBANK_DATA_DIR", "/elsewhere")
    monkeypatch.setenv("TIMEBANK_AUDIT_SEAL_SECONDS", "2")
    monkeypatch.setenv("TIMEBANK_TRANSFER_RETRY_SECONDS", "0")
    gulou, qinhuai = deployments(tmp_path, 9000)
    for at in (gulou, qinhuai):
        env = at.env()
        assert "TIMEBANK_DATABASE_URL" not in env
        assert env["TIMEBANK_DATA_DIR"] == str(tmp_path / at.name)
        assert env["TIMEBANK_LOG_ORIGIN"] == f"{at.name}.timebank.local/demo"
        # the docs runner serves the demo without the retry worker this way
        assert env["TIMEBANK_TRANSFER_RETRY_SECONDS"] == "0"
        assert env["TIMEBANK_AUDIT_SEAL_SECONDS"] == "2"

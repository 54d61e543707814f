"""Credentials from a secrets file (``ORCHESTRATE_<URL>_FILE``), and never printed."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.settings import SettingsError, load_settings


def test_a_url_is_read_from_its_secrets_file_and_the_variable_itself_wins(tmp_path: Path) -> None:
    secret = tmp_path / "database_url"
    secret.write_text("postgresql+psycopg://farm:s3cr3t-pw@db:5432/farm\n")
    env = {"ORCHESTRATE_HOME": str(tmp_path), "ORCHESTRATE_DATABASE_URL_FILE": str(secret)}
    settings = load_settings(env)
    assert settings.database_url == "postgresql+psycopg://farm:s3cr3t-pw@db:5432/farm"
    assert "s3cr3t-pw" not in str(settings.describe())
    env["ORCHESTRATE_DATABASE_URL"] = "sqlite:///elsewhere.db"
    assert load_settings(env).database_url == "sqlite:///elsewhere.db"


@pytest.mark.parametrize("content", [None, ""])
def test_an_unreadable_or_empty_secrets_file_is_a_settings_error_naming_the_file(tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "broker_url"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SettingsError, match="ORCHESTRATE_BROKER_URL_FILE: .*broker_url"):
        load_settings({"ORCHESTRATE_HOME": str(tmp_path), "ORCHESTRATE_BROKER_URL_FILE": str(path)})

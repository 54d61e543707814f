from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.settings import (
    GIB,
    Settings,
    SettingsError,
    default_home,
    get_settings,
    load_settings,
    redact,
)


def test_nothing_set_embeds_everything_under_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings({"ORCHESTRATE_HOME": str(tmp_path / "data")})
    home = tmp_path / "data"
    assert settings.home == home
    assert settings.database_url == f"sqlite:///{home}/orchestrate.db"
    assert settings.broker_url == f"sqla+sqlite:///{home}/broker.db"
    assert settings.result_backend == f"db+sqlite:///{home}/results.db"
    assert settings.artifact_store == str(home / "artifacts")
    assert settings.is_sqlite and settings.artifact_store_is_local
    assert (settings.soft_time_limit, settings.hard_time_limit) == (1800, 2100)
    assert settings.max_model_bytes == 2 * GIB
    assert settings.config_file is None


def test_default_home_is_the_users_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings({})
    assert settings.home == default_home().absolute()
    assert settings.home.name == "orchestrate"


def test_environment_overrides_defaults(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "ORCHESTRATE_HOME": str(tmp_path),
            "ORCHESTRATE_DATABASE_URL": "postgresql+psycopg://farm@db/farm",
            "ORCHESTRATE_BROKER_URL": "redis://127.0.0.1:6379/0",
            "ORCHESTRATE_RESULT_BACKEND": "redis://127.0.0.1:6379/1",
            "ORCHESTRATE_ARTIFACT_STORE": "s3://engines/farm",
            "ORCHESTRATE_SOFT_TIME_LIMIT": "60",
            "ORCHESTRATE_HARD_TIME_LIMIT": "90",
            "ORCHESTRATE_MAX_MODEL_BYTES": "1048576",
        }
    )
    assert settings.database_url == "postgresql+psycopg://farm@db/farm"
    assert settings.broker_url == "redis://127.0.0.1:6379/0"
    assert settings.result_backend == "redis://127.0.0.1:6379/1"
    assert settings.artifact_store == "s3://engines/farm"
    assert not settings.is_sqlite and not settings.artifact_store_is_local
    assert (settings.soft_time_limit, settings.hard_time_limit) == (60, 90)
    assert settings.max_model_bytes == 1048576


def test_environment_beats_config_file_which_beats_defaults(tmp_path: Path) -> None:
    config = tmp_path / "farm.toml"
    config.write_text(
        'database_url = "postgresql://from-file/db"\n'
        'broker_url = "redis://from-file:6379/0"\n'
        "soft_time_limit = 100\n"
        "hard_time_limit = 200\n"
    )
    settings = load_settings(
        {
            "ORCHESTRATE_HOME": str(tmp_path),
            "ORCHESTRATE_CONFIG": str(config),
            "ORCHESTRATE_BROKER_URL": "redis://from-env:6379/0",
        }
    )
    assert settings.database_url == "postgresql://from-file/db"
    assert settings.broker_url == "redis://from-env:6379/0"
    assert settings.result_backend == f"db+sqlite:///{tmp_path}/results.db"
    assert settings.soft_time_limit == 100
    assert settings.config_file == config


def test_config_file_found_in_working_directory_then_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "orchestrate.toml").write_text('broker_url = "redis://home-file/0"\n')
    cwd = tmp_path / "project"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    assert load_settings({"ORCHESTRATE_HOME": str(home)}).broker_url == "redis://home-file/0"

    (cwd / "orchestrate.toml").write_text('[orchestrate]\nbroker_url = "redis://cwd-file/0"\n')
    settings = load_settings({"ORCHESTRATE_HOME": str(home)})
    assert settings.broker_url == "redis://cwd-file/0"
    assert settings.config_file == cwd / "orchestrate.toml"


def test_relative_store_in_config_file_is_relative_to_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "conf" / "orchestrate.toml"
    config.parent.mkdir()
    config.write_text('artifact_store = "blobs"\n')
    monkeypatch.chdir(tmp_path)
    settings = load_settings({"ORCHESTRATE_CONFIG": str(config), "ORCHESTRATE_HOME": str(tmp_path)})
    assert settings.artifact_store == str(tmp_path / "conf" / "blobs")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('databse_url = "sqlite://"\n', r"unknown key\(s\) databse_url"),
        ("database_url = \n", "not valid TOML"),
        ("soft_time_limit = 100\nhard_time_limit = 50\n", "must be greater than soft_time_limit"),
        ('max_model_bytes = "lots"\n', "max_model_bytes"),
    ],
)
def test_bad_config_file_is_a_named_error(tmp_path: Path, content: str, message: str) -> None:
    config = tmp_path / "orchestrate.toml"
    config.write_text(content)
    with pytest.raises(SettingsError, match=message):
        load_settings({"ORCHESTRATE_CONFIG": str(config), "ORCHESTRATE_HOME": str(tmp_path)})


def test_missing_explicit_config_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="ORCHESTRATE_CONFIG points to .*not a file"):
        load_settings({"ORCHESTRATE_CONFIG": str(tmp_path / "nope.toml")})


def test_get_settings_is_cached_until_cleared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCHESTRATE_BROKER_URL", "redis://first/0")
    first = get_settings()
    monkeypatch.setenv("ORCHESTRATE_BROKER_URL", "redis://second/0")
    assert get_settings() is first
    get_settings.cache_clear()
    assert get_settings().broker_url == "redis://second/0"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgresql+psycopg://farm:hunter2@db:5432/farm",
            "postgresql+psycopg://farm:***@db:5432/farm",
        ),
        ("redis://:hunter2@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("rediss://user:hunter2@[::1]:6380/0", "rediss://user:***@[::1]:6380/0"),
        ("s3://AKIAHUNTER2@bucket/prefix", "s3://***@bucket/prefix"),
        (
            "s3://bucket/p?aws_secret_access_key=hunter2&region=eu-west-1",
            "s3://bucket/p?aws_secret_access_key=***&region=eu-west-1",
        ),
        ("postgresql://farm@db/farm?password=hunter2", "postgresql://farm@db/farm?password=***"),
        (
            "sqlite:////var/lib/orchestrate/orchestrate.db",
            "sqlite:////var/lib/orchestrate/orchestrate.db",
        ),
        ("sqla+sqlite:////tmp/broker.db", "sqla+sqlite:////tmp/broker.db"),
        ("/srv/artifacts", "/srv/artifacts"),
    ],
)
def test_redact_hides_secrets_and_keeps_the_rest(url: str, expected: str) -> None:
    assert redact(url) == expected
    assert "hunter2" not in redact(url)


def test_describe_never_shows_a_password(tmp_path: Path) -> None:
    settings = Settings.embedded(
        tmp_path,
        database_url="postgresql://farm:hunter2@db/farm",
        broker_url="redis://:hunter2@broker:6379/0",
        result_backend="db+postgresql://farm:hunter2@db/farm",
        artifact_store="s3://bucket/x?secret=hunter2",
    )
    shown = settings.describe()
    assert "hunter2" not in repr(shown)
    assert shown["database_url"] == "postgresql://farm:***@db/farm"
    assert shown["home"] == str(tmp_path)

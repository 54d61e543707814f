"""Farm settings: environment variables, an optional ``orchestrate.toml``, embedded defaults.

Precedence, highest first: ``ORCHESTRATE_*`` environment variables, the TOML file, the embedded
defaults. With nothing set, every service lives in one data directory (``ORCHESTRATE_HOME``) so a
worker in one terminal and ``orchestrate submit`` in another work on a laptop with no servers.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 only
    import tomli as tomllib

__all__ = [
    "CONFIG_FILE_NAME",
    "ENV_PREFIX",
    "Settings",
    "SettingsError",
    "default_home",
    "environment_variables",
    "get_settings",
    "load_settings",
    "quote_userinfo",
    "redact",
    "scrub",
]

ENV_PREFIX = "ORCHESTRATE_"
CONFIG_FILE_NAME = "orchestrate.toml"
GIB = 1024**3

# Keys that may appear in orchestrate.toml, each also settable as ORCHESTRATE_<KEY>.
_URL_KEYS = ("database_url", "broker_url", "result_backend", "artifact_store")
_LIMIT_KEYS = (
    "soft_time_limit",
    "hard_time_limit",
    "max_model_bytes",
    "max_spec_bytes",
    "api_rate_limit",
    "api_rate_burst",
    "api_max_wait",
    "api_token_cache_seconds",
)
# What a worker exposes about itself: a Prometheus port (unset: no endpoint), its log format and
# how often it heartbeats.
_OBSERVABILITY_KEYS = ("metrics_port", "log_format", "heartbeat_interval")
_FILE_KEYS = frozenset(("home", *_URL_KEYS, *_LIMIT_KEYS, *_OBSERVABILITY_KEYS))

# Query parameters whose values are credentials in the URL forms we accept (S3, Redis, SQL).
_SECRET_QUERY_KEYS = ("password", "secret", "token", "key", "credential", "signature", "auth")
_MASK = "***"


class SettingsError(ValueError):
    """The configuration (environment or ``orchestrate.toml``) is invalid."""


def default_home() -> Path:
    """The data directory used when ``ORCHESTRATE_HOME`` is not set."""
    return Path(platformdirs.user_data_dir("orchestrate", appauthor=False))


class Settings(BaseModel):
    """Where the farm keeps its state and how long a compile may run."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    home: Path
    database_url: str
    broker_url: str
    result_backend: str
    artifact_store: str
    # A compile gets the soft limit to clean up (SoftTimeLimitExceeded) before the hard kill.
    soft_time_limit: float = Field(default=1800.0, gt=0)
    hard_time_limit: float = Field(default=2100.0, gt=0)
    # Both limits are exclusive: a model (spec) must be smaller than max_model_bytes (max_spec_bytes).
    max_model_bytes: int = Field(default=2 * GIB, gt=0)
    max_spec_bytes: int = Field(default=1024**2, gt=0)
    #: ``orchestrate worker`` serves Prometheus metrics on this port (``/metrics``); None: off.
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    #: ``text`` (Celery's lines with ``[job <id>]``) or ``json`` (one object per line).
    log_format: Literal["text", "json"] = "text"
    #: seconds between a worker's heartbeats; it counts as gone after missing three, and then
    #: another worker's reaper queues its running jobs again (the worker records its interval,
    #: so everyone judges it by its own)
    heartbeat_interval: float = Field(default=10.0, gt=0)
    # `orchestrate serve`: requests per second each API token may make on average (0: no
    # limit), how many it may make at once above that, the longest a long-poll wait holds,
    # and how long a token found valid is believed without asking the database again (so a
    # revoked token works for at most that long; 0: ask on every request).
    api_rate_limit: float = Field(default=50.0, ge=0)
    api_rate_burst: int = Field(default=200, gt=0)
    api_max_wait: float = Field(default=60.0, gt=0)
    api_token_cache_seconds: float = Field(default=1.0, ge=0)
    config_file: Path | None = None

    @model_validator(mode="after")
    def _hard_limit_after_soft(self) -> Settings:
        if self.hard_time_limit <= self.soft_time_limit:
            raise ValueError(
                f"hard_time_limit ({self.hard_time_limit:g} s) must be greater than "
                f"soft_time_limit ({self.soft_time_limit:g} s): the soft limit is the warning "
                "that lets a compile clean up before the hard kill"
            )
        return self

    @classmethod
    def embedded(cls, home: Path, **overrides: Any) -> Settings:
        """Settings that keep everything under ``home`` (SQLite, SQLite broker, local folder)."""
        values: dict[str, Any] = {"home": home, **_embedded_urls(home)}
        values.update(overrides)
        return cls(**values)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def artifact_store_is_local(self) -> bool:
        return "://" not in self.artifact_store or self.artifact_store.startswith("file://")

    def ensure_home(self) -> Path:
        """Create the data directory (embedded SQLite files and the local store live there)."""
        self.home.mkdir(parents=True, exist_ok=True)
        return self.home

    def describe(self) -> dict[str, str]:
        """A printable view: every URL with its credentials masked."""
        return {
            "home": str(self.home),
            "config_file": str(self.config_file) if self.config_file else "(none)",
            "database_url": redact(self.database_url),
            "broker_url": redact(self.broker_url),
            "result_backend": redact(self.result_backend),
            "artifact_store": redact(self.artifact_store),
            "soft_time_limit": f"{self.soft_time_limit:g} s",
            "hard_time_limit": f"{self.hard_time_limit:g} s",
            "max_model_bytes": str(self.max_model_bytes),
            "max_spec_bytes": str(self.max_spec_bytes),
            "metrics_port": "(off)" if self.metrics_port is None else str(self.metrics_port),
            "log_format": self.log_format,
            "heartbeat_interval": f"{self.heartbeat_interval:g} s",
            "api_rate_limit": f"{self.api_rate_limit:g}/s" if self.api_rate_limit else "off",
            "api_rate_burst": str(self.api_rate_burst),
            "api_max_wait": f"{self.api_max_wait:g} s",
            "api_token_cache_seconds": f"{self.api_token_cache_seconds:g} s",
        }


def _embedded_urls(home: Path) -> dict[str, str]:
    # Absolute paths give four slashes after "sqlite:", which SQLAlchemy and kombu both expect.
    home = home.expanduser().absolute()
    return {
        "database_url": f"sqlite:///{home / 'orchestrate.db'}",
        "broker_url": f"sqla+sqlite:///{home / 'broker.db'}",
        "result_backend": f"db+sqlite:///{home / 'results.db'}",
        "artifact_store": str(home / "artifacts"),
    }


def environment_variables() -> frozenset[str]:
    """Every ``ORCHESTRATE_*`` variable :func:`load_settings` reads (deployment files are
    checked against this set, so a renamed setting cannot silently break one)."""
    keys = ("home", "config", *_URL_KEYS, *(f"{key}_file" for key in _URL_KEYS), *_LIMIT_KEYS, *_OBSERVABILITY_KEYS)
    return frozenset(ENV_PREFIX + key.upper() for key in keys)


def _env(environ: os._Environ[str] | dict[str, str], key: str) -> str | None:
    value = environ.get(ENV_PREFIX + key.upper())
    if value is None or value.strip() == "":
        return None
    return value.strip()


def _find_config_file(environ: os._Environ[str] | dict[str, str], home: Path | None) -> Path | None:
    explicit = _env(environ, "config")
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise SettingsError(
                f"ORCHESTRATE_CONFIG points to {path}, which is not a file; "
                "fix the path or unset ORCHESTRATE_CONFIG"
            )
        return path
    candidates = [Path.cwd() / CONFIG_FILE_NAME]
    if home is not None:
        candidates.append(home / CONFIG_FILE_NAME)
    return next((path for path in candidates if path.is_file()), None)


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"cannot read {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path} is not valid TOML: {exc}") from exc
    # A file may keep its keys at top level or under [orchestrate].
    section = data.get("orchestrate", data)
    if not isinstance(section, dict):
        raise SettingsError(f"{path}: [orchestrate] must be a table")
    unknown = sorted(set(section) - _FILE_KEYS - {"orchestrate"})
    if unknown:
        raise SettingsError(
            f"{path}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_FILE_KEYS))}"
        )
    return {key: value for key, value in section.items() if key in _FILE_KEYS}


def _secret_file(environ: os._Environ[str] | dict[str, str], key: str) -> str | None:
    """The value of ``ORCHESTRATE_<KEY>_FILE``'s file (a mounted Docker or Kubernetes secret), so
    a URL with credentials need not sit in the environment; the variable itself wins if set."""
    path_text = _env(environ, f"{key}_file")
    if path_text is None:
        return None
    path = Path(path_text).expanduser()
    try:
        value = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        # the message names the file, never its content
        raise SettingsError(f"{ENV_PREFIX}{key.upper()}_FILE: cannot read {path}: {getattr(exc, 'strerror', None) or type(exc).__name__}") from None
    if not value:
        raise SettingsError(f"{ENV_PREFIX}{key.upper()}_FILE: {path} is empty")
    return value


def load_settings(environ: os._Environ[str] | dict[str, str] | None = None) -> Settings:
    """Build settings from ``environ`` (default ``os.environ``) and the TOML file it selects."""
    environ = os.environ if environ is None else environ
    env_home = _env(environ, "home")
    home_hint = Path(env_home).expanduser() if env_home else default_home()
    config_file = _find_config_file(environ, home_hint)
    values: dict[str, Any] = _read_config_file(config_file) if config_file else {}

    if env_home is not None:
        values["home"] = env_home
    home = Path(values.get("home") or default_home()).expanduser().absolute()
    values["home"] = home
    # A relative path in the file means relative to the file, not to wherever the CLI runs.
    if config_file is not None:
        store = values.get("artifact_store")
        if isinstance(store, str) and "://" not in store and not Path(store).is_absolute():
            values["artifact_store"] = str((config_file.parent / store).absolute())

    for key in _URL_KEYS:
        secret = _secret_file(environ, key)
        if secret is not None:
            values[key] = secret
    for key in (*_URL_KEYS, *_LIMIT_KEYS, *_OBSERVABILITY_KEYS):
        env_value = _env(environ, key)
        if env_value is not None:
            values[key] = env_value
    for key, url in _embedded_urls(home).items():
        values.setdefault(key, url)
    values["config_file"] = config_file.absolute() if config_file else None
    try:
        return Settings(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in exc.errors()
        )
        source = f" (from the environment and {config_file})" if config_file else ""
        raise SettingsError(f"invalid settings{source}: {problems}") from None


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once. Tests call ``get_settings.cache_clear()``."""
    return load_settings()


def redact(url: str) -> str:
    """``url`` with any password, access secret or token replaced by ``***``.

    Works on any URL form the farm accepts (SQLAlchemy, kombu, Redis, S3, plain paths); a string
    that is not a URL comes back unchanged.
    """
    if "://" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        # Unparseable (e.g. a bad IPv6 literal): hide everything after the scheme to be safe.
        scheme = url.split("://", 1)[0]
        return f"{scheme}://{_MASK}"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, has_password, _ = userinfo.partition(":")
        if has_password:
            netloc = f"{user}:{_MASK}@{hostport}"
        elif user and parts.scheme.startswith("s3"):
            # s3://ACCESS_KEY@bucket form: the key is a credential, too.
            netloc = f"{_MASK}@{hostport}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        masked = [
            (k, _MASK if any(s in k.lower() for s in _SECRET_QUERY_KEYS) else v) for k, v in pairs
        ]
        query = urlencode(masked, safe="*/:", quote_via=quote)
    # Reassembled by hand: urlunsplit drops the empty authority of "sqlite:////abs/path".
    rebuilt = f"{parts.scheme}://{netloc}{parts.path}"
    if query:
        rebuilt += f"?{query}"
    if parts.fragment:
        rebuilt += f"#{parts.fragment}"
    return rebuilt


def _authority(url: str) -> tuple[str, str, str] | None:
    """(scheme://, authority, rest) of a URL with a network location, else None."""
    scheme, sep, rest = url.partition("://")
    if not sep or rest.startswith("/"):
        return None
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    return scheme + sep, rest[:end], rest[end:]


def quote_userinfo(url: str) -> str:
    """``url`` with every ``@`` of its user and password percent-encoded, so that the last
    ``@`` is the one that ends them (``postgresql://u:p@ss@host/db``). Parsers disagree about
    such a URL; SQLAlchemy's took ``ss@host`` for the host and printed it in its errors."""
    parts = _authority(url)
    if parts is None or parts[1].count("@") < 2:
        return url
    head, authority, tail = parts
    userinfo, _, hostport = authority.rpartition("@")
    return f"{head}{userinfo.replace('@', '%40')}@{hostport}{tail}"


def _passwords(url: str) -> list[str]:
    parts = _authority(url)
    if parts is None or "@" not in parts[1]:
        return []
    userinfo = parts[1].rpartition("@")[0]
    user, has_password, password = userinfo.partition(":")
    secret = password if has_password else (user if url.startswith("s3") else "")
    if not secret:
        return []
    from urllib.parse import unquote

    found = {secret, unquote(secret)}
    # Pieces too: a parser that split the password at an '@' may print the rest as a host name.
    for candidate in list(found):
        found.update(piece for piece in candidate.split("@") if len(piece) >= 3)
    return sorted(found, key=len, reverse=True)


def scrub(text: str, *urls: str) -> str:
    """``text`` (an error message from a driver) with every password of ``urls``, and every
    URL that appears in it, masked."""
    for url in urls:
        for secret in _passwords(url):
            text = text.replace(secret, _MASK)
    return text

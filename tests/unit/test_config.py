"""Settings: IDP_* variables are coerced or refused with the variable's name; production rules hold."""

from __future__ import annotations

import os
import stat

import pytest

from idp.config import DEV_SECRET_PREFIX, ConfigError, Settings, _bool

pytestmark = pytest.mark.unit

STRONG = "Xq7-Lm2vR9tK4pZ8wN1bC6yH3jF5dG0s"  # random-looking: production refuses predictable secrets


@pytest.fixture(autouse=True)
def _no_process_idp_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    # The default database URL looks at IDP_INSTANCE_PATH in the process environment.
    for name in list(os.environ):
        if name.startswith("IDP_"):
            monkeypatch.delenv(name)


def test_an_empty_environment_gives_the_embedded_defaults():
    settings = Settings.from_env({})
    assert settings.env == "development"
    assert settings.redis_url is None
    assert settings.queue_backend == "sql"
    assert settings.database_url == "sqlite:///" + os.path.abspath(os.path.join("instance", "idp.sqlite3"))
    assert settings.cache_ttl_ms == 250
    assert settings.secret_key == ""


def test_values_are_coerced_to_their_types():
    settings = Settings.from_env(
        {
            "IDP_ENV": " production ",
            "IDP_DATABASE_URL": " postgresql+psycopg2://idp@db/idp ",
            "IDP_REDIS_URL": "redis://cache:6379/0",
            "IDP_ISSUER": " https://queue.example.com ",
            "IDP_LOG_LEVEL": " debug",
            "IDP_CACHE_TTL_MS": "500",
            "IDP_MAX_BODY_BYTES": "1024",
            "IDP_PROXY_HOPS": "2",
            "IDP_RETRY_AFTER_SECONDS": "9",
            "IDP_SESSION_CACHE_SECONDS": "0.5",
            "IDP_SECRET_KEY": STRONG,
        }
    )
    assert settings.env == "production"
    assert settings.database_url == "postgresql+psycopg2://idp@db/idp"
    assert settings.redis_url == "redis://cache:6379/0"
    assert settings.queue_backend == "redis"
    assert settings.issuer == "https://queue.example.com"
    assert settings.log_level == "DEBUG"
    assert (settings.cache_ttl_ms, settings.max_body_bytes, settings.proxy_hops) == (500, 1024, 2)
    assert settings.retry_after_seconds == 9
    assert settings.session_cache_seconds == 0.5
    assert settings.validate() is settings


@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_redis_url_means_no_redis(value):
    settings = Settings.from_env({"IDP_REDIS_URL": value})
    assert settings.redis_url is None
    assert settings.queue_backend == "sql"


def test_unknown_variables_are_ignored():
    assert Settings.from_env({"IDP_NO_SUCH_THING": "1", "PATH": "/bin"}) == Settings.from_env({})


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("IDP_CACHE_TTL_MS", "fast"),
        ("IDP_CACHE_TTL_MS", "1.5"),
        ("IDP_MAX_BODY_BYTES", ""),
        ("IDP_PROXY_HOPS", "one"),
        ("IDP_RETRY_AFTER_SECONDS", "5s"),
        ("IDP_SESSION_CACHE_SECONDS", "soon"),
    ],
)
def test_a_bad_value_is_refused_naming_its_variable(variable, value):
    with pytest.raises(ConfigError) as info:
        Settings.from_env({variable: value})
    assert variable in str(info.value)


def test_the_instance_path_moves_the_default_database(tmp_path):
    settings = Settings.from_env({"IDP_INSTANCE_PATH": str(tmp_path)})
    assert settings.database_url == f"sqlite:///{tmp_path / 'idp.sqlite3'}"
    explicit = Settings.from_env({"IDP_INSTANCE_PATH": str(tmp_path), "IDP_DATABASE_URL": "sqlite:///x.db"})
    assert explicit.database_url == "sqlite:///x.db"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", True),
        ("TRUE", True),
        (" yes ", True),
        ("on", True),
        ("0", False),
        ("false", False),
        ("No", False),
        ("off", False),
        ("", False),
    ],
)
def test_boolean_variables_accept_the_usual_spellings(text, value):
    assert _bool(text) is value


def test_a_boolean_variable_refuses_anything_else():
    with pytest.raises(ConfigError):
        _bool("maybe")


# -- validate --------------------------------------------------------------------------------------


def test_an_unknown_environment_is_refused():
    with pytest.raises(ConfigError, match="IDP_ENV"):
        Settings(env="staging", secret_key=STRONG).validate()


def test_an_issuer_with_a_trailing_slash_is_refused():
    with pytest.raises(ConfigError, match="IDP_ISSUER"):
        Settings(env="test", secret_key=STRONG, issuer="http://127.0.0.1:8000/").validate()


@pytest.mark.parametrize("secret", ["", "short", "s" * 31, DEV_SECRET_PREFIX + "x" * 40])
def test_production_needs_a_real_secret_of_32_characters(secret, tmp_path):
    settings = Settings(
        env="production", secret_key=secret, issuer="https://q.example.com", instance_path=str(tmp_path)
    )
    with pytest.raises(ConfigError, match="IDP_SECRET_KEY"):
        settings.validate()
    assert not (tmp_path / "dev_secret_key").exists()


@pytest.mark.parametrize("issuer", ["http://q.example.com", "q.example.com", ""])
def test_production_needs_an_https_issuer(issuer):
    with pytest.raises(ConfigError, match="https"):
        Settings(env="production", secret_key=STRONG, issuer=issuer).validate()


def test_a_valid_production_configuration_passes_unchanged():
    settings = Settings(env="production", secret_key=STRONG, issuer="https://q.example.com")
    assert settings.validate() is settings
    assert settings.is_production
    assert not settings.secret_is_generated


def test_development_without_a_secret_generates_one_and_keeps_it(tmp_path):
    first = Settings(env="development", instance_path=str(tmp_path)).validate()
    assert first.secret_key.startswith(DEV_SECRET_PREFIX)
    assert first.secret_is_generated
    assert len(first.secret_key) > len(DEV_SECRET_PREFIX) + 32
    stored = tmp_path / "dev_secret_key"
    assert stored.read_text(encoding="utf-8") == first.secret_key
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    # A restart (another process) reads the same secret back.
    second = Settings(env="development", instance_path=str(tmp_path)).validate()
    assert second.secret_key == first.secret_key


def test_a_given_secret_is_kept_and_nothing_is_written(tmp_path):
    settings = Settings(env="test", secret_key="given", instance_path=str(tmp_path)).validate()
    assert settings.secret_key == "given"
    assert not (tmp_path / "dev_secret_key").exists()


def test_settings_are_frozen():
    settings = Settings(env="test")
    with pytest.raises(AttributeError):
        settings.env = "production"  # type: ignore[misc]


def test_previous_secrets_follow_the_current_one_without_blanks_or_repeats():
    settings = Settings.from_env(
        {"IDP_SECRET_KEY": "current-secret", "IDP_PREVIOUS_SECRET_KEYS": " older , , current-secret,oldest "}
    )
    assert settings.previous_secret_keys == ("older", "current-secret", "oldest")
    assert settings.secret_keys == ("current-secret", "older", "oldest")
    assert Settings(secret_key="only").secret_keys == ("only",)


@pytest.mark.parametrize("variable", ["IDP_QUEUE_BLOCK_SIZE", "IDP_QUEUE_JOIN_BATCH"])
@pytest.mark.parametrize("value", ["0", "-1", "1000001"])
def test_queue_sizes_out_of_range_are_refused_naming_their_variable(variable, value):
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({variable: value}).validate()


def test_the_join_batch_takes_its_range():
    assert Settings.from_env({"IDP_QUEUE_JOIN_BATCH": "1"}).validate().queue_join_batch == 1
    assert Settings.from_env({"IDP_QUEUE_JOIN_BATCH": "1000"}).validate().queue_join_batch == 1000


def test_a_negative_worker_count_is_refused_and_zero_is_the_default():
    with pytest.raises(ConfigError, match="IDP_WORKERS"):
        Settings.from_env({"IDP_WORKERS": "-1"}).validate()
    assert Settings.from_env({"IDP_WORKERS": "0"}).validate().workers == 0

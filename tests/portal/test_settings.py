"""Settings come from the environment and refuse bad values at start-up."""

import subprocess
import sys

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from portal import envconfig
from tests.conftest import REPO

PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": "x" * 60 + "-production-secret-key-for-tests",
    "CREDENTIAL_KEYS": Fernet.generate_key().decode(),
    "ALLOWED_HOSTS": "imapcopy.example.com",
    "SITE_URL": "https://imapcopy.example.com",
    "DATABASE_URL": "sqlite:////tmp/imapcopy-settings-test.sqlite3",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    # The README's production example sets these two; they are off by default because they
    # commit every subdomain of the site to HTTPS.
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
    "SECURE_HSTS_PRELOAD": "true",
}


def load_settings(env: dict[str, str], *code: str) -> subprocess.CompletedProcess:
    script = "import django; django.setup(); from django.conf import settings; " + "; ".join(code)
    return subprocess.run(
        [sys.executable, "-c", script],
        env={"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "portal.settings", **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"DEBUG": "maybe"}, "DEBUG must be a boolean"),
        ({"SECRET_KEY": ""}, "SECRET_KEY must be set when DEBUG is off"),
        ({"CREDENTIAL_KEYS": ""}, "CREDENTIAL_KEYS must be set when DEBUG is off"),
        ({"CREDENTIAL_KEYS": "not-a-fernet-key"}, "CREDENTIAL_KEYS must be comma-separated Fernet keys"),
        ({"DATABASE_URL": "mysql://db/imapcopy"}, "DATABASE_URL must be a URL starting with"),
        ({"REDIS_URL": "http://127.0.0.1:6379"}, "REDIS_URL must be a URL starting with"),
        ({"EMAIL_PORT": "twenty-five"}, "EMAIL_PORT must be a whole number"),
        ({"EMAIL_PORT": "70000"}, "EMAIL_PORT must be at most 65535"),
        ({"EMAIL_USE_TLS": "yes", "EMAIL_USE_SSL": "yes"}, "mutually exclusive"),
        ({"IMAPCOPY_ALLOWED_PRIVATE_NETWORKS": "10.0.0.0/8,intranet"}, "'intranet' is not an IP address"),
        ({"LANGUAGE_CODE": "xx"}, "LANGUAGE_CODE must be one of"),
        ({"SITE_URL": "imapcopy.example.com"}, "SITE_URL must be a URL starting with"),
        ({"IMAPCOPY_RATE_LIMIT_FACTOR": "lots"}, "IMAPCOPY_RATE_LIMIT_FACTOR must be a whole number"),
        ({"IMAPCOPY_RATE_LIMIT_FACTOR": "0"}, "IMAPCOPY_RATE_LIMIT_FACTOR must be at least 1"),
        ({"IMAPCOPY_IMAP_TIMEOUT_SECONDS": "120"}, "IMAPCOPY_HEARTBEAT_STALE_SECONDS must be at least 3 times"),
        ({"IMAPCOPY_NETWORK_PATIENCE_SECONDS": "a while"}, "IMAPCOPY_NETWORK_PATIENCE_SECONDS must be a whole number"),
        ({"IMAPCOPY_PARALLELISM": "0"}, "IMAPCOPY_PARALLELISM must be at least 1"),
        ({"IMAPCOPY_PARALLELISM": "64"}, "IMAPCOPY_PARALLELISM must be at most 16"),
        ({"IMAPCOPY_INSTANCE": "Prod_1"}, "IMAPCOPY_INSTANCE must be 1 to 24 lowercase letters"),
        ({"IMAPCOPY_INSTANCE": "x" * 25}, "IMAPCOPY_INSTANCE must be 1 to 24 lowercase letters"),
    ],
)
def test_bad_setting_stops_start_up_with_a_clear_message(overrides, message):
    result = load_settings({**PRODUCTION, **overrides}, "print('loaded')")
    assert result.returncode != 0
    assert "loaded" not in result.stdout
    assert message in result.stderr


def test_production_environment_loads_with_secure_defaults():
    result = load_settings(
        PRODUCTION,
        "print(settings.DEBUG, settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE,"
        " settings.SECURE_SSL_REDIRECT, settings.SECURE_HSTS_SECONDS, settings.ALLOWED_HOSTS)",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False True True True 31536000 ['imapcopy.example.com']"


def test_check_deploy_is_clean_with_production_settings():
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        env={"PATH": "/usr/bin:/bin", **PRODUCTION},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_several_credential_keys_are_accepted_newest_first():
    keys = [Fernet.generate_key().decode() for _ in range(2)]
    result = load_settings(
        {**PRODUCTION, "CREDENTIAL_KEYS": f" {keys[0]} , {keys[1]} "}, "print(settings.CREDENTIAL_KEYS)"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(keys)


def test_env_helpers_reject_bad_values(monkeypatch):
    monkeypatch.setenv("SOME_FLAG", "perhaps")
    with pytest.raises(ImproperlyConfigured, match="SOME_FLAG must be a boolean"):
        envconfig.env_bool("SOME_FLAG", False)
    monkeypatch.setenv("SOME_NUMBER", "-3")
    with pytest.raises(ImproperlyConfigured, match="at least 0"):
        envconfig.env_int("SOME_NUMBER", 1, minimum=0)
    monkeypatch.setenv("SOME_LIST", " a, ,b ")
    assert envconfig.env_list("SOME_LIST") == ["a", "b"]
    monkeypatch.setenv("SOME_FLAG", "Off")
    assert envconfig.env_bool("SOME_FLAG", True) is False


def test_local_secret_is_created_once_with_owner_only_permissions(tmp_path):
    path = tmp_path / "var" / "secret"
    first = envconfig.local_secret(path, lambda: "generated-1")
    second = envconfig.local_secret(path, lambda: "generated-2")
    assert first == second == "generated-1"
    assert path.stat().st_mode & 0o777 == 0o600


def test_local_run_needs_no_configuration(tmp_path):
    result = load_settings(
        {"IMAPCOPY_VAR_DIR": str(tmp_path)},
        "print(settings.DEBUG, settings.DATABASES['default']['ENGINE'], len(settings.CREDENTIAL_KEYS))",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "django.db.backends.sqlite3", "1"]
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "credential_key").stat().st_mode & 0o777 == 0o600


def test_rate_limits_are_unchanged_by_default_and_scaled_by_the_factor(settings):
    from django.core.cache import cache

    from apps.selfservice.ratelimit import allow

    cache.clear()
    assert settings.IMAPCOPY_RATE_LIMIT_FACTOR == 1
    assert [bool(allow("factor-test", "a", limit=2, window_seconds=60)) for _ in range(3)] == [True, True, False]
    settings.IMAPCOPY_RATE_LIMIT_FACTOR = 3
    assert [bool(allow("factor-test", "b", limit=2, window_seconds=60)) for _ in range(7)] == [True] * 6 + [False]
    cache.clear()

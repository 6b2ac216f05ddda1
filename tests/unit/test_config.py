"""Configuration: every bad value stops start-up with a message naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.config import ConfigError, Secret, load_settings

GOOD = """
[providers.cordage]
type = "cordage"
base_url = "https://api.trycordage.com/api/webhooks"
api_key = "env:CORDAGE_API_KEY"
max_in_flight = 50
rate_limits = { trigger = "60/6s" }
poll = { initial_s = 2.0, factor = 1.5, max_s = 30.0, jitter = 0.2 }
run_timeout_s = 1800

[providers.codewords]
type = "codewords"
base_url = "https://runtime.codewords.ai"
api_key = "file:{keyfile}"

[callbacks]
timeout_s = 10
allow_private_networks = false
allowed_networks = ["10.1.2.0/24"]
signing_secret = "env:SIGNING"

[artifacts]
url = "file://./.orchestrator/artifacts"

[[schedules]]
name = "nightly-enrich"
cron = "0 2 * * *"
timezone = "Europe/Berlin"
job = { workflow = "codewords/linkedin-enricher", inputs = { spreadsheet = "1Bxi" } }
"""


def good(keyfile: Path) -> str:
    return GOOD.replace("{keyfile}", str(keyfile))


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CORDAGE_API_KEY", "cordage_supersecret")
    monkeypatch.setenv("SIGNING", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    monkeypatch.delenv("ORCHESTRATOR_CONFIG", raising=False)
    monkeypatch.delenv("ORCHESTRATOR_DATABASE_URL", raising=False)
    monkeypatch.delenv("ORCHESTRATOR_REDIS_URL", raising=False)
    keyfile = tmp_path / "cw.key"
    keyfile.write_text("cwk-filesecret\n")
    return keyfile


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "orchestrator.toml"
    path.write_text(text)
    return path


def test_products_example_loads(tmp_path: Path, env: Path) -> None:
    settings = load_settings(write(tmp_path, good(env)))
    cordage = settings.providers["cordage"]
    assert cordage.api_key.reveal() == "cordage_supersecret"
    assert settings.providers["codewords"].api_key.reveal() == "cwk-filesecret"
    # The file's limit wins; the documented ones fill the rest.
    assert cordage.rate_limits.trigger is not None
    assert (cordage.rate_limits.trigger.count, cordage.rate_limits.trigger.period_s) == (60, 6)
    assert cordage.rate_limits.read is not None and cordage.rate_limits.read.count == 120
    assert settings.schedules[0].name == "nightly-enrich"


def test_secrets_never_show(tmp_path: Path, env: Path) -> None:
    settings = load_settings(write(tmp_path, good(env)))
    for text in (repr(settings), str(settings), repr(settings.providers)):
        assert "cordage_supersecret" not in text
        assert "cwk-filesecret" not in text
        assert "whsec_MfKQ" not in text
    assert repr(Secret("x", "env:A")) == "Secret('env:A')"


def test_environment_overrides_urls(tmp_path: Path, env: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRATOR_DATABASE_URL", "postgresql+psycopg://u:p@db/orch")
    monkeypatch.setenv("ORCHESTRATOR_REDIS_URL", "redis://cache:6379/2")
    settings = load_settings(write(tmp_path, good(env)))
    assert settings.database.url == "postgresql+psycopg://u:p@db/orch"
    assert settings.redis.url == "redis://cache:6379/2"


def test_config_env_var_points_at_the_file(tmp_path: Path, env: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, good(env))
    monkeypatch.setenv("ORCHESTRATOR_CONFIG", str(path))
    assert "cordage" in load_settings().providers


def test_a_missing_explicit_file_is_an_error(tmp_path: Path, env: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRATOR_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match="nope.toml does not exist"):
        load_settings()


@pytest.mark.parametrize(("text", "key", "says"), [
    ('[providers.c]\ntype = "cordage"\nbase_url = "ftp://x"\napi_key = "k"',
     "providers.c.base_url", "http:// or https://"),
    ('[providers.c]\ntype = "cordage"\nbase_url = "https://x"\napi_key = "env:MISSING_KEY"',
     "providers.c.api_key", "MISSING_KEY is not set"),
    ('[providers.c]\ntype = "cordage"\nbase_url = "https://x"\napi_key = "file:/no/such"',
     "providers.c.api_key", "cannot read secret file"),
    ('[providers.c]\ntype = "nope"\nbase_url = "https://x"\napi_key = "k"',
     "providers.c.type", "'codewords', 'cordage' or 'sandbox'"),
    ('[providers.c]\ntype = "cordage"\napi_key = "k"', "providers.c.base_url",
     "required but missing"),
    ('[providers.c]\ntype = "cordage"\nbase_url = "https://x"\napi_key = "k"\n'
     'rate_limits = { trigger = "lots" }', "providers.c.rate_limits.trigger", "<count>/<period>"),
    ('[providers.c]\ntype = "cordage"\nbase_url = "https://x"\napi_key = "k"\n'
     'poll = { factor = 0.5 }', "providers.c.poll.factor", "greater than or equal to 1"),
    ('[callbacks]\nsigning_secret = "plain"', "callbacks.signing_secret", "whsec_"),
    ('[callbacks]\nallowed_networks = ["10.0.0.0/99"]', "callbacks.allowed_networks",
     "not a subnet"),
    ("[callbacks]\ntimeoutt_s = 3", "callbacks.timeoutt_s", "unknown key"),
    ('[database]\nurl = "mysql://x"', "database.url", "sqlite:///"),
    ('[redis]\nurl = "http://x"', "redis.url", "redis://"),
    ('[[schedules]]\nname = "n"\njob = {}', "schedules.0", "exactly one of 'cron'"),
    ('[[schedules]]\nname = "n"\ncron = "0 2 * *"\njob = { workflow = "p/x" }', "schedules.0",
     "expected five"),
    ('[[schedules]]\nname = "n"\nevery = "30s"\ntimezone = "Berlin"\njob = { workflow = "p/x" }',
     "schedules.0", "IANA time zone"),
    ('[[schedules]]\nname = "n"\nevery = "30s"\njob = { inputs = {} }', "schedules.0",
     "'workflow' must be"),
    ('[[schedules]]\nname = "n"\nevery = "30s"\noverlap = "queue"\njob = { workflow = "p/x" }',
     "schedules.0.overlap", "'skip'"),
    ('[[schedules]]\nname = "n"\nevery = "30s"\njob = { workflow = "nope/x" }', "(top level)",
     "provider 'nope' is not configured"),
])
def test_bad_values_name_the_key(tmp_path: Path, env: Path, text: str, key: str,
                                 says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, text))
    message = str(caught.value)
    assert f"{key}:" in message
    assert says in message


def test_bad_toml_says_where(tmp_path: Path, env: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML.*line 1"):
        load_settings(write(tmp_path, "[database\nurl = 1"))


def test_secrets_are_stripped_and_control_characters_refused(
        tmp_path: Path, env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEY_NL", "cordage_abc\n")
    text = '[providers.c]\ntype = "cordage"\nbase_url = "https://x"\napi_key = "env:KEY_NL"\n'
    settings = load_settings(write(tmp_path, text))
    assert settings.providers["c"].api_key.reveal() == "cordage_abc"
    monkeypatch.setenv("KEY_NL", "cordage\nabc")
    with pytest.raises(ConfigError, match="control characters") as caught:
        load_settings(write(tmp_path, text))
    assert "cordage\nabc" not in str(caught.value)


def test_a_signing_secret_must_be_base64_after_its_prefix(tmp_path: Path, env: Path) -> None:
    with pytest.raises(ConfigError, match="not base64"):
        load_settings(write(tmp_path, '[callbacks]\nsigning_secret = "whsec_***"'))


def test_a_launch_lease_must_outlast_a_provider_request(tmp_path: Path, env: Path) -> None:
    with pytest.raises(ConfigError, match="jobs.launch_lease_s: must be more than 30 s"):
        load_settings(write(tmp_path, "[jobs]\nlaunch_lease_s = 10"))

"""Settings: legacy variables honoured, invalid values named, .env read."""

from __future__ import annotations

import pytest

from kitrade.config import Settings, env_var_name, load_settings
from kitrade.errors import ConfigError

LEGACY = {
    "TIMESCALE_HOST": "db.internal",
    "TIMESCALE_PORT": "6543",
    "TIMESCALE_DB": "easyinsight",
    "TIMESCALE_USER": "trader",
    "TIMESCALE_PASSWORD": "s3cr3t-value",
    "EASYINSIGHT_API_URL": "http://127.0.0.1:9999/",
    "OLLAMA_MODEL": "llama3.1:8b",
    "NHITS_AUTO_RETRAIN_DAYS": "3",
    "NHITS_USE_GPU": "0",
}


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for key in list(__import__("os").environ):
        if key.startswith(
            ("KITRADE_", "TIMESCALE_", "NHITS_", "OLLAMA_", "EASYINSIGHT_", "CHROMA_")
        ):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no stray .env
    return monkeypatch


def test_legacy_variables_keep_their_meaning(clean_env):
    for k, v in LEGACY.items():
        clean_env.setenv(k, v)
    s = load_settings()
    assert (s.timescale_host, s.timescale_port, s.timescale_db, s.timescale_user) == (
        "db.internal",
        6543,
        "easyinsight",
        "trader",
    )
    assert s.timescale_password.get_secret_value() == "s3cr3t-value"
    assert s.easyinsight_api_url == "http://127.0.0.1:9999"
    assert s.resolved_source == "http"
    assert s.ollama_model == "llama3.1:8b"
    assert s.nhits_auto_retrain_days == 3 and s.nhits_use_gpu is False
    assert not s.embedded_db


def test_defaults_are_embedded_and_local(clean_env):
    s = load_settings()
    assert s.embedded_db and s.host == "127.0.0.1" and s.port == 3000
    assert s.train_gpu_fraction == 0.4 and s.resolved_source == "sample"
    assert s.api_key is None and s.ollama_model == "llama3.1:70b"


@pytest.mark.parametrize(
    ("var", "value", "expect"),
    [
        ("TIMESCALE_PORT", "abc", "TIMESCALE_PORT: Input should be a valid integer"),
        ("TIMESCALE_PORT", "70000", "TIMESCALE_PORT: Input should be less than or equal to 65535"),
        ("NHITS_USE_GPU", "maybe", "NHITS_USE_GPU: Input should be a valid boolean"),
        (
            "NHITS_AUTO_RETRAIN_DAYS",
            "0",
            "NHITS_AUTO_RETRAIN_DAYS: Input should be greater than or equal to 1",
        ),
        (
            "KITRADE_TRAIN_GPU_FRACTION",
            "1.5",
            "KITRADE_TRAIN_GPU_FRACTION: Input should be less than or equal to 1",
        ),
        (
            "EASYINSIGHT_API_URL",
            "ftp://x",
            "EASYINSIGHT_API_URL: Value error, expected an http:// or https:// URL",
        ),
        (
            "KITRADE_SOURCE",
            "s3",
            "KITRADE_SOURCE: Input should be 'auto', 'sample', 'files' or 'http'",
        ),
    ],
)
def test_invalid_value_names_the_variable(clean_env, var, value, expect):
    clean_env.setenv(var, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert expect in info.value.message
    assert repr(value) in info.value.message


def test_dotenv_is_read(clean_env, tmp_path):
    (tmp_path / ".env").write_text("KITRADE_PORT=3100\nNHITS_AUTO_RETRAIN_DAYS=9\n")
    s = load_settings()
    assert s.port == 3100 and s.nhits_auto_retrain_days == 9


def test_production_refuses_placeholder_secret(clean_env):
    clean_env.setenv("KITRADE_ENV", "production")
    clean_env.setenv("KITRADE_API_KEY", "changeme")
    with pytest.raises(ConfigError, match="KITRADE_API_KEY: expected a real secret"):
        load_settings()


def test_secret_values_never_in_repr(clean_env):
    clean_env.setenv("TIMESCALE_PASSWORD", "hunter2-very-secret")
    clean_env.setenv("KITRADE_API_KEY", "key-very-secret")
    s = load_settings()
    assert "very-secret" not in repr(s) and "very-secret" not in str(s.model_dump())


def test_every_setting_is_in_the_readme():
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    missing = [
        env_var_name(f) for f in Settings.model_fields if f"`{env_var_name(f)}`" not in readme
    ]
    assert missing == [], f"README configuration table lacks {missing}"

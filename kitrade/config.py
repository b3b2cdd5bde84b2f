"""One settings class for the whole platform.

Built once at an entry point (CLI, job script, deployment builder) with
``load_settings()`` and passed down; never instantiated at import time.

The old Docker-compose system's variables (``TIMESCALE_*``,
``EASYINSIGHT_API_URL``, ``OLLAMA_MODEL``, ``NHITS_*``) keep their names and
meaning; everything else is ``KITRADE_*``. A ``.env`` file in the working
directory is read as well.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from kitrade.errors import ConfigError
from kitrade.schemas import SYMBOL_PATTERN
from kitrade.timeframes import TIMEFRAMES

__all__ = ["Settings", "env_var_name", "load_settings", "parse_model_groups"]

_PLACEHOLDER_SECRETS = {"changeme", "change-me", "secret", "password", "admin", "test"}


class Settings(BaseSettings):
    """kitrade configuration, read from the environment and ``.env``.

    Field docs double as the README's configuration table
    (``scripts/settings_table.py`` prints it).
    """

    model_config = SettingsConfigDict(
        env_prefix="KITRADE_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        populate_by_name=True,
    )

    # --- general -----------------------------------------------------------
    env: Literal["development", "production"] = Field(
        "development", description="`production` refuses placeholder secrets."
    )
    data_dir: Path = Field(
        Path.home() / ".kitrade",
        description="Root of embedded database, models dir and RAG dir.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level of kitrade's own loggers."
    )

    # --- database (old system's names) ------------------------------------
    timescale_host: str | None = Field(
        None,
        validation_alias=AliasChoices("TIMESCALE_HOST"),
        description="Existing PostgreSQL/TimescaleDB host. Unset: kitrade runs an "
        "embedded PostgreSQL under the data dir.",
    )
    timescale_port: int = Field(
        5432,
        ge=1,
        le=65535,
        validation_alias=AliasChoices("TIMESCALE_PORT"),
        description="Port of `TIMESCALE_HOST`.",
    )
    timescale_db: str = Field(
        "kitrade",
        min_length=1,
        validation_alias=AliasChoices("TIMESCALE_DB"),
        description="Database name.",
    )
    timescale_user: str = Field(
        "postgres",
        min_length=1,
        validation_alias=AliasChoices("TIMESCALE_USER"),
        description="Database user.",
    )
    timescale_password: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("TIMESCALE_PASSWORD"),
        description="Database password (not used by the embedded database).",
    )
    db_pool_min: int = Field(1, ge=0, le=64, description="Connection pool minimum size.")
    db_pool_max: int = Field(8, ge=1, le=256, description="Connection pool maximum size.")
    db_connect_timeout_s: float = Field(
        5.0, gt=0, le=300, description="Seconds to wait for a database connection."
    )
    embedded_pg_port: int = Field(
        54329,
        ge=1024,
        le=65535,
        description="Port the embedded PostgreSQL listens on (127.0.0.1 only).",
    )

    # --- Ray cluster that `kitrade up` starts -------------------------------
    ray_port: int = Field(
        6379,
        ge=1024,
        le=65535,
        description="GCS port of the local Ray cluster `kitrade up` starts.",
    )
    ray_dashboard_port: int = Field(
        8265,
        ge=1024,
        le=65535,
        description="Ray dashboard and job API port of that cluster (127.0.0.1 only).",
    )
    ray_client_port: int = Field(
        10001, ge=1024, le=65535, description="Ray Client server port of that cluster."
    )
    ray_agent_port: int = Field(
        52365, ge=1024, le=65535, description="Ray dashboard agent's HTTP port of that cluster."
    )
    ray_temp_dir: Path | None = Field(
        None,
        description="Ray's temp dir (sessions, logs, sockets) for that cluster. Unset: "
        "`kitrade-ray-<hash of the data dir>` under the system temp dir (kept short: Ray's "
        "socket paths must fit 107 bytes).",
    )

    # --- market data --------------------------------------------------------
    easyinsight_api_url: str | None = Field(
        None,
        validation_alias=AliasChoices("EASYINSIGHT_API_URL"),
        description="Upstream market-data HTTP API; when set, `http` is the default source.",
    )
    source: Literal["auto", "sample", "files", "http"] = Field(
        "auto",
        description="Market-data source: `auto` = `http` when `EASYINSIGHT_API_URL` is set, "
        "`files` when `KITRADE_FILES_DIR` is set, else `sample`.",
    )
    files_dir: Path | None = Field(
        None, description="Folder of CSV/Parquet OHLCV files for the `files` source."
    )
    upstream_timeout_s: float = Field(
        10.0, gt=0, le=600, description="Timeout of one upstream HTTP request."
    )
    upstream_retries: int = Field(
        3, ge=0, le=20, description="Retries of a failed upstream request (with backoff)."
    )
    upstream_page_size: int = Field(
        5000, ge=1, le=1_000_000, description="Bars asked per upstream page."
    )

    # --- HTTP ----------------------------------------------------------------
    host: str = Field("127.0.0.1", description="Address the HTTP gateway binds.")
    port: int = Field(3000, ge=1, le=65535, description="Port of the HTTP gateway.")
    api_key: SecretStr | None = Field(
        None, description="Bearer key for state-changing routes. Unset: they refuse (403)."
    )
    read_auth: bool = Field(False, description="`1`: reads need the key too.")
    max_body_bytes: int = Field(
        2_000_000, ge=1024, le=1_000_000_000, description="Larger request bodies get 413."
    )
    rate_limit_per_s: float = Field(
        10.0,
        ge=0,
        le=100_000,
        description="Non-GET requests per second per API key (or client address); "
        "over it: 429 with Retry-After. `0` turns it off.",
    )
    fetch_allow: str = Field(
        "",
        description="Comma-separated `host:port` pairs that knowledge-from-URL may fetch "
        "even though they are not public (an intranet wiki). Everything else non-public "
        "is refused.",
    )
    rate_limit_burst: int = Field(30, ge=1, le=1_000_000, description="Rate-limit bucket size.")
    read_rate_limit_per_s: float = Field(
        0.0, ge=0, le=100_000, description="The same for GET requests; `0` (default) is off."
    )

    # --- training (old system's names) ---------------------------------------
    nhits_auto_retrain_days: int = Field(
        7,
        ge=1,
        le=3650,
        validation_alias=AliasChoices("NHITS_AUTO_RETRAIN_DAYS"),
        description="Retrain a symbol whose active model is older than this many days.",
    )
    nhits_use_gpu: bool = Field(
        True,
        validation_alias=AliasChoices("NHITS_USE_GPU"),
        description="Train on GPUs when the cluster has them (`0` forces CPU).",
    )
    train_gpu_fraction: float = Field(
        0.4, gt=0, le=1, description="GPU fraction one training task asks for."
    )
    llm_gpu_fraction: float = Field(
        0.6, gt=0, le=1, description="GPU fraction of the vLLM application."
    )
    promotion_tolerance: float = Field(
        0.05,
        ge=0,
        le=10,
        description="With the same verdict against naive (a Diebold-Mariano test at 5 %) and "
        "calibrated bands equally on target, a new version is promoted if its 80 % interval "
        "score relative to the random walk's (for versions without band scores: its relative "
        "MAE) is at most this fraction worse than the active one's.",
    )
    model_scope: Literal["symbol", "shared", "both"] = Field(
        "symbol",
        description="What `train` fits: one NHITS per symbol, one shared NHITS per timeframe "
        "trained on all its symbols, or both (each symbol then serves the better of the two on "
        "the same evaluation windows).",
    )

    # --- explicit shared-model groups ------------------------------------------
    model_groups: str = Field(
        "",
        description="Explicit shared-model groups, `GROUP=SYMBOL,SYMBOL;GROUP=...` (e.g. "
        "`MAJORS=EURUSD,GBPUSD;TECH=GOOG,AAPL`): in the `shared` and `both` scopes each group's "
        "symbols train one model together, the other symbols one per timeframe. A group name is "
        "1-20 of A-Z 0-9 _ - and not a timeframe; a group has two symbols or more, of one "
        "timeframe; a symbol is in one group at most. Symbols not registered or not active are "
        "left out of their group.",
    )
    train_max_attempts: int = Field(
        3, ge=1, le=10, description="Attempts per symbol before a training is reported failed."
    )
    train_max_steps: int | None = Field(
        None, ge=1, le=100_000, description="Override NHITS max steps for every symbol."
    )
    train_target: Literal["level", "log_return"] = Field(
        "level",
        description="What NHITS forecasts: `level` (prices) or `log_return` (cumulative log "
        "returns, converted back to price levels and bands; prices must be above 0).",
    )
    train_distributed_min_bars: int = Field(
        2_000_000,
        ge=0,
        description="A shared-model group with at least this many bars in all trains with Ray "
        "Train across `KITRADE_TRAIN_DISTRIBUTED_WORKERS` workers (data-parallel); `0`: never.",
    )
    train_distributed_workers: int = Field(
        2,
        ge=1,
        le=1024,
        description="Ray Train workers of a large group (at most one per series); each asks for "
        "1 CPU and, on GPUs, `KITRADE_TRAIN_GPU_FRACTION` of one.",
    )
    train_group_cpus: int = Field(
        2,
        ge=1,
        le=256,
        description="CPUs a shared-model group's task asks for (torch uses as many threads), "
        "at most the largest node's; a symbol's own task asks for 1.",
    )
    retrain_new_bars_events: int = Field(
        1,
        ge=1,
        le=10_000,
        description="Retrain a symbol after this many `bars_ingested` events past its model's data.",
    )
    retrain_drift_factor: float = Field(
        2.0,
        gt=1,
        le=100,
        description="Retrain when live error exceeds validation error by this factor.",
    )
    retrain_min_coverage_80: float = Field(
        0.6,
        ge=0,
        le=1,
        description="Retrain when live coverage of the 80 % interval falls below this.",
    )
    retrain_check_interval_s: float = Field(
        3600.0, gt=0, le=604800, description="How often the retrain scheduler checks triggers."
    )
    models_dir: Path | None = Field(
        None, description="Model artifacts; default `<data dir>/models`. May be shared storage."
    )

    # --- analysis -------------------------------------------------------------
    ollama_model: str = Field(
        "llama3.1:70b",
        min_length=1,
        validation_alias=AliasChoices("OLLAMA_MODEL"),
        description="Model for the Ollama backend.",
    )
    ollama_host: str | None = Field(
        None,
        validation_alias=AliasChoices("OLLAMA_HOST", "KITRADE_OLLAMA_HOST"),
        description="Ollama server URL; when set, the Ollama backend is used.",
    )
    llm_base_url: str | None = Field(
        None, description="OpenAI-compatible base URL (vLLM, ray.serve.llm, llama.cpp)."
    )
    llm_model: str = Field("llama3.1:70b", description="Model name at `KITRADE_LLM_BASE_URL`.")
    llm_api_key: SecretStr | None = Field(None, description="Key for `KITRADE_LLM_BASE_URL`.")
    llm_timeout_s: float = Field(60.0, gt=0, le=3600, description="LLM answer timeout.")
    llm_context_tokens: int = Field(
        8192,
        ge=4096,
        le=1_048_576,
        description="The LLM's context length (vLLM `max_model_len`, Ollama `num_ctx`): the "
        "prompt is trimmed to fit beside the answer's limit (a quarter of it at most).",
    )
    rag_dir: Path | None = Field(None, description="chromadb store; default `<data dir>/rag`.")
    chroma_host: str | None = Field(
        None,
        validation_alias=AliasChoices("CHROMA_HOST", "KITRADE_CHROMA_HOST"),
        description="Chroma server host; unset: kitrade owns a local store.",
    )
    chroma_port: int = Field(
        8000,
        ge=1,
        le=65535,
        validation_alias=AliasChoices("CHROMA_PORT", "KITRADE_CHROMA_PORT"),
        description="Chroma server port.",
    )

    @field_validator("easyinsight_api_url", "llm_base_url", "ollama_host")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"expected an http:// or https:// URL, was {value!r}")
        return value.rstrip("/")

    @field_validator("model_groups")
    @classmethod
    def _groups(cls, value: str) -> str:
        parse_model_groups(value)  # raises ValueError naming what is wrong
        return value

    @field_validator("timescale_host", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    # --- derived --------------------------------------------------------------
    @property
    def embedded_db(self) -> bool:
        """True when kitrade runs its own PostgreSQL."""
        return self.timescale_host is None

    @property
    def pg_dir(self) -> Path:
        """Data directory of the embedded PostgreSQL."""
        return self.data_dir / "pg"

    @property
    def resolved_ray_temp_dir(self) -> Path:
        """Ray's temp dir for the cluster `kitrade up` starts (one per data dir)."""
        if self.ray_temp_dir is not None:
            return self.ray_temp_dir
        digest = hashlib.sha256(str(self.data_dir.resolve()).encode()).hexdigest()[:10]
        return Path(tempfile.gettempdir()) / f"kitrade-ray-{digest}"

    @property
    def explicit_groups(self) -> dict[str, tuple[str, ...]]:
        """``KITRADE_MODEL_GROUPS`` parsed: group name -> its symbols, in the order given."""
        return parse_model_groups(self.model_groups)

    @property
    def resolved_models_dir(self) -> Path:
        """Where model artifacts live."""
        return self.models_dir or self.data_dir / "models"

    @property
    def resolved_rag_dir(self) -> Path:
        """Where the chromadb store lives."""
        return self.rag_dir or self.data_dir / "rag"

    @property
    def resolved_source(self) -> str:
        """The market-data source ``auto`` stands for."""
        if self.source != "auto":
            return self.source
        if self.easyinsight_api_url:
            return "http"
        if self.files_dir:
            return "files"
        return "sample"

    def check_secrets(self) -> None:
        """Refuse placeholder secrets outside development."""
        if self.env != "production":
            return
        for name, secret in (
            ("KITRADE_API_KEY", self.api_key),
            ("TIMESCALE_PASSWORD", self.timescale_password),
        ):
            if secret is not None and secret.get_secret_value().lower() in _PLACEHOLDER_SECRETS:
                raise ConfigError(
                    f"{name}: expected a real secret in production, was a placeholder"
                )


#: A group name: it names the ``models/shared/<group>/`` folder and starts version ids.
_GROUP_RE = re.compile(r"^[A-Z0-9_-]{1,20}$")
_SYMBOL_RE = re.compile(SYMBOL_PATTERN)


def parse_model_groups(text: str) -> dict[str, tuple[str, ...]]:
    """Parse ``GROUP=SYMBOL,SYMBOL;GROUP=...`` (spaces around names are ignored).

    Raises:
        ValueError: An entry without ``=``, a group name that is not 1-20 of
            A-Z 0-9 _ - or is a timeframe, a group named twice, a bad symbol, a
            group of fewer than two symbols, or a symbol in two groups.
    """
    groups: dict[str, tuple[str, ...]] = {}
    owner: dict[str, str] = {}
    for entry in (e.strip() for e in text.split(";")):
        if not entry:
            continue
        name, sep, members = (x.strip() for x in entry.partition("="))
        if not sep:
            raise ValueError(f"expected GROUP=SYMBOL,SYMBOL;GROUP=..., entry {entry!r} has no '='")
        if not _GROUP_RE.fullmatch(name) or name in TIMEFRAMES:
            raise ValueError(
                f"group name: expected 1-20 of A-Z 0-9 _ - that is not a timeframe, was {name!r}"
            )
        if name in groups:
            raise ValueError(f"group {name} is named twice")
        symbols = tuple(s.strip() for s in members.split(",") if s.strip())
        for s in symbols:
            if not _SYMBOL_RE.fullmatch(s):
                raise ValueError(
                    f"group {name}: expected symbols of 1-20 of A-Z 0-9 . _ -, was {s!r}"
                )
            if s in owner:
                where = (
                    f"twice in group {name}" if owner[s] == name else f"in {owner[s]} and {name}"
                )
                raise ValueError(f"symbol {s} is named {where}: a symbol is in one group at most")
            owner[s] = name
        if len(symbols) < 2:
            raise ValueError(f"group {name}: expected two symbols or more, was {list(symbols)}")
        groups[name] = symbols
    return groups


def env_var_name(field: str) -> str:
    """The environment variable that sets ``field`` (its first alias or ``KITRADE_*``)."""
    info = Settings.model_fields[field]
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    if isinstance(alias, str):
        return alias
    return f"KITRADE_{field.upper()}"


def load_settings(**overrides: object) -> Settings:
    """Build ``Settings`` from the environment, turning validation errors into ConfigError.

    Raises:
        ConfigError: naming the variable, what it expected and what it was.
    """
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = err["loc"][0] if err["loc"] else "?"
            var = env_var_name(str(loc)) if str(loc) in Settings.model_fields else str(loc)
            lines.append(f"{var}: {err['msg']} (was {err.get('input')!r})")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None
    settings.check_secrets()
    from kitrade.logs import configure_logging

    configure_logging(settings.log_level)  # every entry point builds its settings here
    return settings

"""Market-data sources: ``sample`` (bundled real bars), ``files`` (CSV/Parquet), ``http`` (upstream API)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kitrade.data.sources.files import FilesSource
from kitrade.data.sources.http import HttpSource
from kitrade.data.sources.sample import SampleSource
from kitrade.errors import ConfigError

if TYPE_CHECKING:
    from kitrade.config import Settings
    from kitrade.data.sources.base import MarketDataSource

__all__ = ["SOURCE_NAMES", "build_source"]

SOURCE_NAMES = ("sample", "files", "http")


def build_source(settings: Settings, name: str | None = None) -> MarketDataSource:
    """The source called ``name`` (default: the configured one)."""
    name = name or settings.resolved_source
    if name == "sample":
        return SampleSource()
    if name == "files":
        if settings.files_dir is None:
            raise ConfigError(
                "KITRADE_FILES_DIR: expected a folder for the files source, was unset"
            )

        return FilesSource(settings.files_dir)
    if name == "http":
        if not settings.easyinsight_api_url:
            raise ConfigError(
                "EASYINSIGHT_API_URL: expected an http(s) URL for the http source, was unset"
            )

        return HttpSource(
            settings.easyinsight_api_url,
            timeout_s=settings.upstream_timeout_s,
            retries=settings.upstream_retries,
            page_size=settings.upstream_page_size,
        )
    raise ConfigError(f"KITRADE_SOURCE: expected one of {SOURCE_NAMES}, was {name!r}")

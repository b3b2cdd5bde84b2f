"""What every command needs: settings, the store, validated input.

Each helper imports its module inside, so ``kitrade --help`` loads neither
pydantic-settings nor psycopg.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kitrade.errors import InvalidInputError, describe_validation_errors

if TYPE_CHECKING:
    from kitrade.config import Settings
    from kitrade.data.db import Database

__all__ = ["settings", "store", "validated"]


def settings() -> Settings:
    """The configuration from the environment and ``.env`` (exit 78 when invalid)."""
    from kitrade.config import load_settings  # pydantic-settings: not needed for --help

    return load_settings()


def store(config: Settings) -> Database:
    """The store, started (embedded) and migrated."""
    from kitrade.data.store import open_store  # psycopg: not needed for --help

    return open_store(config, start=True)


def validated(model: type, **fields: object) -> Any:
    """``model(**fields)``, or ``InvalidInputError`` naming each bad field and its input."""
    import pydantic  # only commands that take structured input pay for it

    try:
        return model(**fields)
    except pydantic.ValidationError as exc:
        raise InvalidInputError(describe_validation_errors(exc.errors(), show_input=True)) from None

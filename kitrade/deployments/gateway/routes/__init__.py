"""One router per resource; ``ROUTERS`` in the order the API document lists them."""

from kitrade.deployments.gateway.routes import (
    analysis,
    backtests,
    forecast,
    health,
    knowledge,
    models,
    strategies,
    symbols,
    sync,
)

__all__ = ["ROUTERS"]

ROUTERS = [
    health.router,
    forecast.router,
    models.router,
    symbols.router,
    strategies.router,
    analysis.router,
    knowledge.router,
    sync.router,
    backtests.router,
]

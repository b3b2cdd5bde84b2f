"""Ray Serve deployments: one per module, each a thin adapter with its ``build_app``."""

__all__: list[str] = []

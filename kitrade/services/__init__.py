"""Use cases: plain functions over settings and a database that compose the layers below.

The CLI, the deployments and the ``scripts/`` jobs call these, so each
behaviour is written once. Import the submodule you need
(``from kitrade.services import catalog``); this package imports nothing
itself, so a light caller pays only for what it uses.
"""

__all__: list[str] = []

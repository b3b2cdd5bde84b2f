"""The web dashboard the gateway serves: one page, its script and style, and plotly.js.

``mount(api)`` adds the routes to the gateway's FastAPI app; the page itself
(``static/index.html``, ``app.js``, ``app.css``) is plain HTML, CSS and
JavaScript with no build step, and draws its charts with the plotly.js bundled
in the ``plotly`` wheel.
"""

from kitrade.dashboard.routes import mount

__all__ = ["mount"]

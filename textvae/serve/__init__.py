"""`textvae serve`: explore a model's latent space in the browser (`pip install 'textvae[serve]'`).

    import textvae
    from textvae.serve import Explorer
    from textvae.serve.app import create_app
    app = create_app(Explorer.open(textvae.load("runs/words_en")))   # an ASGI app, for uvicorn or a test client

`explorer.py` computes what each route answers, through the API; `app.py` (Starlette, the optional extra) reads and
bounds requests, queues the model work and serves the page in `static/`: plain HTML, CSS and JavaScript, nothing
fetched from elsewhere. This module imports no web library (nor torch), so the command line can describe its options without one.
"""

from ..settings import MAP_ITEMS, MAX_MAP_ITEMS

_LAZY = ("Explorer", "LatentMap", "Unavailable")      # from `explorer`, imported when first used (it loads torch)


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'textvae.serve' has no attribute {name!r}")
    from . import explorer
    return getattr(explorer, name)

__all__ = ["MAP_ITEMS", "MAX_MAP_ITEMS", "Explorer", "LatentMap", "Unavailable"]

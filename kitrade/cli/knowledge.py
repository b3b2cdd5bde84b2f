"""``kitrade kb``: add, list, search and remove knowledge documents.

Each command reaches the knowledge actor on the running platform's cluster,
or starts a private local one (see ``kitrade.services.knowledge``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from kitrade.cli import deps
from kitrade.cli.render import documents_table, out

__all__ = ["app"]

app = typer.Typer(help="Knowledge base: add, list, search, remove.", no_args_is_help=True)


def _kb() -> Any:
    from kitrade.services import knowledge  # ray: only for knowledge commands

    return knowledge.knowledge_actor(deps.settings())


@app.command("add")
def kb_add(
    files: Annotated[list[Path], typer.Argument(help="Text or Markdown files")],
    symbol: Annotated[
        list[str] | None, typer.Option("--symbol", help="Symbols it is about")
    ] = None,
    date: Annotated[str | None, typer.Option(help="Date of the document (YYYY-MM-DD)")] = None,
) -> None:
    """Add documents (chunked, embedded) to the knowledge base."""
    from kitrade.services import knowledge  # ray: only for knowledge commands

    knowledge.check_files(files)  # before a cluster is started for them
    for f, res in knowledge.add_files(_kb(), files, symbols=symbol, date_=date):
        out.print(f"added {f} as {res['doc_id']} ({res['chunks']} chunks)")


@app.command("list")
def kb_list() -> None:
    """List knowledge documents."""
    from kitrade.services import knowledge  # ray: only for knowledge commands

    out.print(documents_table(knowledge.list_documents(_kb())))


@app.command("search")
def kb_search(text: str, k: Annotated[int, typer.Option(min=1, max=50)] = 5) -> None:
    """Search the knowledge base."""
    from kitrade.services import knowledge  # ray: only for knowledge commands

    for h in knowledge.search(_kb(), query=text, k=k):
        out.print(f"[bold]{h['id']}[/] ({h['score']:.3f}) {h['title']}")
        out.print("  " + h["text"][:300].replace("\n", " "), highlight=False)


@app.command("rm")
def kb_rm(doc_id: str) -> None:
    """Remove a knowledge document."""
    from kitrade.services import knowledge  # ray: only for knowledge commands

    n = knowledge.remove(_kb(), doc_id=doc_id)
    out.print(f"removed {doc_id} ({n} chunks)")

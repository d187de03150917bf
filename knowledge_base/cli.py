"""`hehe kb …` (add, import, reindex, search, eval) and `hehe ask`.

Works on ``settings.data_dir``. Run standalone with ``python -m knowledge_base.cli``.
The CLI acts as the local operator (admin scope) unless --role/--user/--jurisdiction are given.
"""
from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(name="kb", help="Knowledge base: documents, historical cases, search, evaluation.",
                  no_args_is_help=True)


def _settings():
    from backend.core.config import get_settings

    return get_settings()


def _gazetteer(settings):
    """Place names from the jurisdictions table when the database has them, else the built-in list."""
    from knowledge_base.places import Gazetteer, gazetteer_from_db

    db_file = settings.data_dir / "hehe.db"
    if settings.database_url or db_file.exists():
        try:
            from backend.core.db import make_engine, make_sessionmaker

            async def _load():
                engine = make_engine(settings.db_url)
                try:
                    async with make_sessionmaker(engine)() as s:
                        return await gazetteer_from_db(s)
                finally:
                    await engine.dispose()

            g = asyncio.run(_load())
            if g is not None:
                return g
        except Exception:  # noqa: BLE001 - no jurisdictions table yet
            pass
    return Gazetteer.default()


def _kb(workers: int = 1):
    from knowledge_base.facade import KnowledgeBase

    s = _settings()
    return KnowledgeBase(s, gazetteer=_gazetteer(s), ingest_workers=workers, migrate=True).load()


WorkersOpt = Annotated[int, typer.Option("--workers", help="embedding processes for bulk ingestion (USE); "
                                         "2 on an idle 2-core machine roughly doubles the rate")]


def _scope(role: str, user: Optional[int], jurisdiction: Optional[int]):
    from knowledge_base.records import Scope

    return Scope(role=role, user_id=user, jurisdiction_id=jurisdiction, may_see_all=role == "admin")


RoleOpt = Annotated[str, typer.Option("--role", help="admin | official | deputy | mediator | citizen …")]
UserOpt = Annotated[Optional[int], typer.Option("--user", help="asker's user id")]
JurOpt = Annotated[Optional[int], typer.Option("--jurisdiction", help="asker's jurisdiction id")]


@app.command("add")
def add_command(
    files: Annotated[list[Path], typer.Argument(help=".md / .txt / .pdf / .docx (laws, regulations, guides)")],
    record_id: Annotated[Optional[str], typer.Option("--id", help="reference id (one file only)")] = None,
    category: Annotated[str, typer.Option(help="category label")] = "法规",
    workers: WorkersOpt = 1,
) -> None:
    """Add (or replace) documents; article numbers (第X条) are kept for citations."""
    from knowledge_base.ingest import document_record

    if record_id and len(files) > 1:
        raise typer.BadParameter("--id needs exactly one file")
    kb = _kb(workers)
    for f in files:
        rec = document_record(f, record_id=record_id, category=category)
        kb.upsert([rec])
        n_art = sum(1 for s in rec.sections or [] if s[0])
        typer.echo(f"{rec.id}  《{rec.title}》  {n_art} articles")
    kb.compact()


@app.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(help="JSONL: one {id, kind, category, location, date, text} per line")],
    workers: WorkersOpt = 1,
) -> None:
    """Import historical records; re-import updates. Bad lines are reported with line numbers."""
    from knowledge_base.ingest import import_jsonl

    kb = _kb(workers)
    rep = import_jsonl(kb, file, kb.gazetteer.resolve_ids, batch=256 if workers > 1 else 128)
    kb.close()
    typer.echo(f"imported {rep.imported}, updated {rep.updated}, bad lines {len(rep.errors)}")
    for no, msg in rep.errors:
        typer.echo(f"  line {no}: {msg}", err=True)
    if rep.errors:
        raise typer.Exit(code=2 if not (rep.imported or rep.updated) else 1)


@app.command("reindex")
def reindex_command(
    kind: Annotated[Optional[list[str]], typer.Option("--kind", help="only these kinds")] = None,
    workers: WorkersOpt = 1,
) -> None:
    """Rebuild the index of every registered source from the database."""
    from backend.core.db import make_engine, make_sessionmaker
    from knowledge_base.models import discover_sources, reindex_all, sources

    discover_sources()
    kb = _kb(workers)
    settings = kb.settings

    async def _run():
        engine = make_engine(settings.db_url)
        try:
            return await reindex_all(make_sessionmaker(engine), kb, kinds=kind, batch=256 if workers > 1 else 64)
        finally:
            await engine.dispose()

    if not sources():
        typer.echo("no sources registered (no backend/<slice>/kb_source.py yet); rebuilding the keyword index only")
        kb.compact()
        return
    out = asyncio.run(_run())
    for k, n in out.items():
        typer.echo(f"{k}: {n}")


@app.command("search")
def search_command(
    query: Annotated[str, typer.Argument()],
    k: Annotated[int, typer.Option("-k", help="results")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    mode: Annotated[str, typer.Option(help="hybrid | dense | keyword")] = "hybrid",
    role: RoleOpt = "admin", user: UserOpt = None, jurisdiction: JurOpt = None,
) -> None:
    """Search: [{"id","score","kind","snippet"}]."""
    kb = _kb()
    hits = kb.search(query, _scope(role, user, jurisdiction), k=k, mode=mode)
    if as_json:
        typer.echo(json.dumps([h.as_json() for h in hits], ensure_ascii=False))
        return
    if not hits:
        typer.echo("未找到相关记录")
    for h in hits:
        typer.echo(f"{h.score:.3f}  {h.id}  [{h.kind}] {h.title}\n        {h.snippet}")


EVAL_DIR = Path("tests/kb/data/eval")


@app.command("eval")
def eval_command(
    directory: Annotated[Path, typer.Option("--dir", help="records.jsonl, dev.jsonl and test.jsonl")] = EVAL_DIR,
    split: Annotated[Optional[list[str]], typer.Option("--split", help="dev and/or test (default both)")] = None,
    verbose: Annotated[bool, typer.Option("-v", help="list misses")] = False,
) -> None:
    """R@5, MRR@10 and no-answer handling per question type, for dense, keyword and hybrid, on the
    dev split (tuned on) and the test split (reported only). Runs in a temporary data directory."""
    import tempfile

    from knowledge_base.evaluation import SPLITS, evaluate, format_results, load_questions
    from knowledge_base.facade import KnowledgeBase
    from knowledge_base.ingest import import_jsonl

    settings = _settings()
    with tempfile.TemporaryDirectory(prefix="hehe-kb-eval-") as tmp:
        kb = KnowledgeBase(settings.model_copy(update={"data_dir": Path(tmp), "chroma_url": None, "database_url": None}),
                           gazetteer=_gazetteer(settings), migrate=True).load()
        rep = import_jsonl(kb, directory / "records.jsonl", kb.gazetteer.resolve_ids, progress=False)
        if rep.errors:
            raise typer.BadParameter(f"records.jsonl: {rep.errors[:3]}")
        typer.echo(f"{kb.count()} records")
        for name in split or SPLITS:
            res = evaluate(kb, load_questions(directory / f"{name}.jsonl"))
            typer.echo("\n" + format_results(res, f"== {name} split =="))
            if verbose:
                for mode, r in res.items():
                    for m in r.misses:
                        typer.echo(f"  [{mode}] miss: {m}")
                    for m in r.false_positives:
                        typer.echo(f"  [{mode}] no-answer question answered: {m}")
        kb.close()


def ask_command(
    question: Annotated[str, typer.Argument(help="问题")],
    as_json: Annotated[bool, typer.Option("--json", help="print {answer, citations}")] = False,
    role: RoleOpt = "admin", user: UserOpt = None, jurisdiction: JurOpt = None,
    lang: Annotated[str, typer.Option(help="zh | en")] = "zh",
) -> None:
    """Ask the knowledge base; the answer cites records as [1][2]."""
    kb = _kb()
    ans = asyncio.run(kb.aanswer(question, _scope(role, user, jurisdiction), lang=lang))
    if as_json:
        typer.echo(json.dumps(ans.as_json(), ensure_ascii=False))
    else:
        typer.echo(ans.answer)
        if ans.citations:
            typer.echo("引用：" + "、".join(ans.citations))


app.command("ask")(ask_command)  # also `hehe kb ask` / `python -m knowledge_base.cli ask`


if __name__ == "__main__":
    sys.exit(app())

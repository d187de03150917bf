"""Getting content in: documents (laws, regulations, mediation guides) and historical JSONL."""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from knowledge_base.records import KINDS, Record
from backend.core import taxonomy
from knowledge_base.textproc import cut_title, normalize_text, split_articles

DOC_SUFFIXES = (".md", ".txt", ".pdf", ".docx")


# ----------------------------------------------------------------------------- documents
def read_document(path: Path) -> tuple[str, str]:
    """(title, text) of a .md / .txt / .pdf / .docx file."""
    suf = path.suffix.lower()
    title = ""
    if suf in (".md", ".txt"):
        raw = path.read_bytes()
        for enc in ("utf-8-sig", "gb18030"):
            try:
                text = raw.decode(enc)
                break
            except UnicodeDecodeError:
                continue
        else:
            text = raw.decode("utf-8", errors="replace")
        if suf == ".md":
            m = re.search(r"(?m)^\s*#\s+(.+)$", text)
            if m:
                title = m.group(1).strip()
            text = re.sub(r"(?m)^\s*#{1,6}\s*", "", text)
            text = re.sub(r"\*\*|__|`", "", text)
    elif suf == ".pdf":
        from pypdf import PdfReader

        reader = PdfReader(str(path))
        text = "\n".join((p.extract_text() or "") for p in reader.pages)
        meta_title = (reader.metadata or {}).get("/Title") if reader.metadata else None
        title = str(meta_title or "").strip()
    elif suf == ".docx":
        import docx

        d = docx.Document(str(path))
        paras = [p.text for p in d.paragraphs]
        text = "\n".join(paras)
        title = (d.core_properties.title or "").strip()
        if not title:
            title = next((p.strip() for p in paras if p.strip()), "")
    else:
        raise ValueError(f"unsupported file type {suf} (use {', '.join(DOC_SUFFIXES)})")
    if not title:
        first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
        title = first if len(first) <= 60 and not first.endswith("。") else path.stem
    title = normalize_text(title).strip().strip("《》").strip()
    return title, normalize_text(text)


def document_record(path: Path, *, record_id: str | None = None, category: str = "法规",
                    doc_date: date | None = None, public: bool = True) -> Record:
    title, text = read_document(path)
    sections = split_articles(text)
    # drop a preamble that only repeats the title
    if sections and sections[0][0] is None and sections[0][1].strip().strip("《》") == title:
        sections = sections[1:]
    if not sections:
        raise ValueError(f"{path.name}: no text found")
    rid = record_id or "DOC-" + hashlib.sha1(title.encode("utf-8")).hexdigest()[:10].upper()
    return Record(id=rid, kind="document", title=title, text=text, category=category, location="台州市",
                  jurisdiction_ids=[], date=doc_date, public=public, sections=sections)


# ----------------------------------------------------------------------------- history JSONL
@dataclass
class ImportReport:
    imported: int = 0
    updated: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)  # (line number, message)

    @property
    def ok(self) -> bool:
        return not self.errors


def parse_date(v) -> date:
    if isinstance(v, date):
        return v
    s = str(v).strip()
    for fmt in ("%Y-%m-%d", "%Y/%m/%d", "%Y%m%d", "%Y.%m.%d", "%Y年%m月%d日"):
        try:
            return datetime.strptime(s, fmt).date()
        except ValueError:
            continue
    try:
        return datetime.fromisoformat(s).date()
    except ValueError:
        raise ValueError(f"bad date {s!r}") from None


def record_from_json(obj: dict, resolver: Callable[[str], list[int]] | None = None) -> Record:
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    missing = [k for k in ("id", "kind", "text") if not str(obj.get(k) or "").strip()]
    if missing:
        raise ValueError(f"missing field(s): {', '.join(missing)}")
    kind = taxonomy.kind_of(str(obj["kind"]))  # "矛盾纠纷", "走失人员", "代表督办" as Taizhou's exports write them
    if kind not in KINDS:
        raise ValueError(f"unknown kind {str(obj['kind']).strip()!r} (expected one of {', '.join(KINDS)} "
                         f"or a Chinese label such as 矛盾纠纷、走失人员、代表督办)")
    d = parse_date(obj["date"]) if obj.get("date") else None
    loc = normalize_text(str(obj.get("location") or "")).strip()
    text = normalize_text(str(obj["text"])).strip()
    cat = taxonomy.category_of(obj.get("category"))
    title = normalize_text(str(obj.get("title") or "")).strip()
    if not title:
        first = re.split(r"[。！？；]", text, maxsplit=1)[0]
        title = (f"{cat}：" if cat else "") + cut_title(first, 24)
    jids = obj.get("jurisdiction_ids")
    if not jids and resolver and loc:
        jids = resolver(loc)
    owners = obj.get("owner_user_ids") or []
    return Record(id=str(obj["id"]).strip(), kind=kind, title=title, text=text, category=cat, location=loc,
                  jurisdiction_ids=[int(j) for j in (jids or [])], date=d,
                  owner_user_ids=[int(u) for u in owners], public=bool(obj.get("public", kind == "document")))


def import_jsonl(kb, path: Path, resolver: Callable[[str], list[int]] | None = None, *, batch: int = 128,
                 progress: bool = True) -> ImportReport:
    """Import one record per line; re-importing updates (upsert by id). Bad lines are reported with
    their line numbers while the good lines are kept."""
    from tqdm import tqdm

    rep = ImportReport()
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    buf: list[Record] = []

    def flush():
        if not buf:
            return
        existing = kb.store.existing([r.id for r in buf])
        kb.upsert(buf)
        rep.updated += len({r.id for r in buf} & existing)
        rep.imported += len({r.id for r in buf} - existing)
        buf.clear()

    for no, line in enumerate(tqdm(lines, desc="import", unit="line", disable=not progress), 1):
        if not line.strip():
            continue
        try:
            rec = record_from_json(json.loads(line), resolver)
            rec.validate()
        except json.JSONDecodeError as e:
            rep.errors.append((no, f"invalid JSON: {e.msg}"))
            continue
        except (ValueError, TypeError) as e:
            rep.errors.append((no, str(e)))
            continue
        buf.append(rec)
        if len(buf) >= batch:
            flush()
    flush()
    kb.compact()
    return rep

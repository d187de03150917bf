"""Extractive answers: the most relevant sentences of the top records, grouped per record,
each group with a numbered citation [n]; masking of personal data."""
from __future__ import annotations

from backend.core.i18n import gettext
from backend.core.masking import mask_personal, minor_names
from knowledge_base.records import Hit, Scope
from knowledge_base.textproc import char_bigrams, looks_like_instruction, split_sentences, tokenize_cached

MAX_SENTENCES_PER_RECORD = 2
MAX_SENTENCE_CHARS = 160


def mask_for(scope: Scope, meta: dict, text: str, full_text: str | None = None) -> str:
    """Mask phones, ID numbers and minors' names unless the asker is entitled to them."""
    if scope.entitled_to_personal_data(meta.get("owner_user_ids") or []):
        return text
    # minors named anywhere in the record are masked in every excerpt of it
    return mask_personal(text, minor_names(full_text) if full_text else None)


def score_sentence(sentence: str, q_tokens: set[str], q_bigrams: set[str]) -> float:
    if not sentence:
        return 0.0
    toks = set(tokenize_cached(sentence))
    tok = sum(1.0 + min(len(t), 4) * 0.25 for t in q_tokens & toks)
    bg = len(q_bigrams & char_bigrams(sentence)) / (len(q_bigrams) ** 0.5 + 1)
    return tok + bg


def best_sentences(text: str, query: str, n: int = MAX_SENTENCES_PER_RECORD) -> list[str]:
    """The ``n`` sentences of ``text`` most related to the query, in their original order.
    Sentences that address the assistant (planted instructions) are never quoted."""
    sents = [s for s in split_sentences(text) if not looks_like_instruction(s)]
    if not sents:
        return []
    q_tokens = set(tokenize_cached(query[:300]))
    q_bigrams = char_bigrams(query[:300])
    scored = [(score_sentence(s, q_tokens, q_bigrams) + (0.3 if i == 0 else 0.0), i) for i, s in enumerate(sents)]
    top = sorted(scored, key=lambda x: -x[0])[:n]
    picked = sorted(i for _, i in top)
    out = []
    for i in picked:
        s = sents[i]
        out.append(s if len(s) <= MAX_SENTENCE_CHARS else s[: MAX_SENTENCE_CHARS - 1] + "…")
    return out


def citation_label(hit: Hit) -> str:
    """《台州市矛盾纠纷多元化解条例》第十条 for documents; the title and reference for cases."""
    if hit.kind == "document":
        arts = [c.get("article") for c in hit.chunks if c.get("article")]
        arts = list(dict.fromkeys(arts))[:2]
        return f"《{hit.title}》" + "、".join(arts)
    bits = [hit.id]
    d = hit.meta.get("date")
    if d:
        d = str(d)
        bits.append(f"{d[:4]}-{d[4:6]}-{d[6:8]}")
    if hit.meta.get("location"):
        bits.append(hit.meta["location"])
    return f"{hit.title}（{'，'.join(bits)}）"


def record_excerpt(hit: Hit, query: str, full_text: str, scope: Scope) -> str:
    if hit.kind == "document" and hit.chunks:
        parts = []
        for c in hit.chunks[:2]:
            sents = best_sentences(c["text"], query, n=2)
            if sents:
                parts.append("".join(sents))
        text = " …… ".join(parts)
    else:
        text = "".join(best_sentences(full_text, query))
    return mask_for(scope, hit.meta, text, full_text)


def extractive_answer(query: str, hits: list[Hit], texts: dict[str, str], scope: Scope, lang: str = "zh",
                      max_records: int = 3) -> tuple[str, list[str]]:
    """(answer text, citations). Nothing passes the threshold → the "no result" message."""
    if not hits:
        return gettext(lang, "kb.no_result"), []
    lines = [gettext(lang, "kb.answer_intro", n=min(len(hits), max_records))]
    cites: list[str] = []
    for hit in hits[:max_records]:
        excerpt = record_excerpt(hit, query, texts.get(hit.id, ""), scope)
        if not excerpt:
            continue
        cites.append(hit.id)
        lines.append(f"[{len(cites)}] {citation_label(hit)}：{excerpt}")
    if not cites:
        return gettext(lang, "kb.no_result"), []
    return "\n".join(lines), cites

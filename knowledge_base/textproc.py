"""Chinese text handling: sentence splitting, chunking, BM25 tokens, article numbers."""
from __future__ import annotations

import logging
import re
import threading
import unicodedata
from functools import lru_cache

# ---------------------------------------------------------------- normalisation
# NFKC for the characters that PDF makers and browsers substitute: Kangxi radicals and CJK
# radicals ("第⼀条" → "第一条"), CJK compatibility ideographs, full-width letters and digits,
# enclosed numbers. Chinese full-width punctuation (，：？（）) is kept as written.
_NFKC_RANGES = ((0x2E80, 0x2FDF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F), (0xFF10, 0xFF19), (0xFF21, 0xFF3A),
                (0xFF41, 0xFF5A), (0x2460, 0x24FF), (0x3200, 0x33FF), (0x00A0, 0x00A0), (0x3000, 0x3000))


@lru_cache(maxsize=1)
def _nfkc_table() -> dict[int, str]:
    table: dict[int, str] = {}
    for a, b in _NFKC_RANGES:
        for cp in range(a, b + 1):
            n = unicodedata.normalize("NFKC", chr(cp))
            if n != chr(cp):
                table[cp] = n
    return table


def normalize_text(text: str) -> str:
    """Compatibility characters → their ordinary form (see ``_NFKC_RANGES``); also drops the
    zero-width characters some exports carry."""
    return (text or "").translate(_nfkc_table()).replace("\u200b", "").replace("\ufeff", "")


_NUMBER_RUN = re.compile(r"(?:[0-9０-９]+(?:[.．,][0-9０-９]+)*|[零〇一二两三四五六七八九十百千]{2,})[万亿]?[%％]?")


def cut_title(text: str, limit: int = 24) -> str:
    """The first ``limit`` characters, never ending inside a number ("拖欠41.6万元" is not cut to
    "拖欠41."): a number crossing the limit is kept whole, or left out when that would overrun by far."""
    text = (text or "").strip()
    if len(text) <= limit:
        return text
    for m in _NUMBER_RUN.finditer(text):
        if m.start() < limit < m.end():
            if m.end() - limit <= 8:
                return text[: m.end()]
            return text[: m.start()].rstrip("，,、 ")
    return text[:limit]


SENT_END = "。！？；!?;\n"
_SENT_RE = re.compile(r"[^。！？；!?;\n]*(?:[。！？；!?;]+[”’」』）)]*|\n|$)")

CHUNK_SIZE = 300
CHUNK_OVERLAP = 60


def split_sentences(text: str) -> list[str]:
    """Split on 。！？； and newlines, keeping the end punctuation (and a closing quote) with the sentence."""
    out = []
    for m in _SENT_RE.finditer(text or ""):
        s = m.group(0).strip()
        if s:
            out.append(s)
    return out


def _hard_split(sentence: str, size: int) -> list[str]:
    """A single sentence longer than a chunk: cut at commas if possible, else every ``size`` chars."""
    parts: list[str] = []
    buf = ""
    for piece in re.split(r"(?<=[，,、：:])", sentence):
        if len(buf) + len(piece) <= size:
            buf += piece
            continue
        if buf:
            parts.append(buf)
        while len(piece) > size:
            parts.append(piece[:size])
            piece = piece[size:]
        buf = piece
    if buf:
        parts.append(buf)
    return parts


def chunk_text(text: str, size: int = CHUNK_SIZE, overlap: int = CHUNK_OVERLAP) -> list[str]:
    """Pack whole sentences into chunks of about ``size`` chars.

    A sentence is never cut unless it alone is longer than ``size``. Consecutive chunks share
    their boundary sentences (up to ``overlap`` chars) so a fact spanning two sentences survives.
    """
    sents: list[str] = []
    for s in split_sentences(text):
        sents.extend(_hard_split(s, size) if len(s) > size else [s])
    if not sents:
        return []
    chunks: list[str] = []
    cur: list[str] = []
    cur_len = 0
    for s in sents:
        if cur and cur_len + len(s) > size:
            chunks.append("".join(cur))
            # carry the tail sentences (≤ overlap chars) into the next chunk
            tail: list[str] = []
            tl = 0
            for t in reversed(cur):
                if tl + len(t) > overlap:
                    break
                tail.insert(0, t)
                tl += len(t)
            if tl + len(s) > size:
                tail, tl = [], 0
            cur, cur_len = tail, tl
        cur.append(s)
        cur_len += len(s)
    if cur:
        last = "".join(cur)
        if not chunks or not chunks[-1].endswith(last):
            chunks.append(last)
    return chunks


# ---------------------------------------------------------------- tokens (BM25 channel)
_jieba_lock = threading.Lock()
_jieba_ready = False

STOPWORDS = frozenset(
    """的 了 和 与 及 或 在 是 有 没有 吗 呢 吧 啊 么 什么 怎么 怎样 如何 哪些 哪个 哪里 多少 几 个 件 起 这 那 这个 那个 一个
    我 你 他 她 它 我们 他们 她们 请问 请 帮 帮忙 查 查询 一下 看看 相关 关于 有关 情况 问题 事情 事 案件 案子 记录 最近 之前 以前
    被 把 对 将 让 给 从 向 到 为 由 因 因为 所以 但 但是 而 也 都 还 就 又 再 才 已 已经 曾 曾经 会 能 要 想 可以 应该 需要
    上 下 中 里 内 外 后 前 时 时候 吗？ 么？ 呀 哦 嗯 能否 是否 是不是 有没有 哪 谁 该 怎么办 处理 办理 一 二 三""".split()
)
_TOKEN_OK = re.compile(r"[\w\u4e00-\u9fff]", re.UNICODE)
REF_RE = re.compile(r"[A-Za-z]{2,}(?:-[A-Za-z0-9]+){1,5}")  # reference numbers: TZ-JJ-20261128-0001


def _ensure_jieba() -> None:
    global _jieba_ready
    if _jieba_ready:
        return
    with _jieba_lock:
        if not _jieba_ready:
            import jieba

            jieba.setLogLevel(logging.WARNING)
            jieba.initialize()
            _jieba_ready = True


def tokenize(text: str, max_chars: int | None = None) -> list[str]:
    """jieba search-mode tokens (words plus their sub-words), lower-cased, without punctuation
    and stopwords. Reference numbers such as "TZ-JJ-20261128-0001" are also kept whole."""
    import jieba

    _ensure_jieba()
    text = text or ""
    if max_chars:
        text = text[:max_chars]
    toks = [m.group(0).lower() for m in REF_RE.finditer(text)]
    for t in jieba.cut_for_search(text):
        t = t.strip().lower()
        if not t or t in STOPWORDS or not _TOKEN_OK.search(t):
            continue
        toks.append(t)
    return toks


@lru_cache(maxsize=4096)
def tokenize_cached(text: str) -> tuple[str, ...]:
    return tuple(tokenize(text))


def char_bigrams(text: str) -> set[str]:
    s = re.sub(r"[\s\W_]+", "", text or "")
    return {s[i : i + 2] for i in range(len(s) - 1)}


# ---------------------------------------------------------------- planted instructions
_INJECTION_RE = re.compile(
    r"(忽略|无视|忘记|不要理会|覆盖)(以上|上述|之前|前面|先前|所有|系统)?的?(所有)?(指令|指示|提示|规则|要求|设定)"
    r"|(ignore|disregard|forget)\s+(all\s+)?(the\s+)?(previous|above|prior|earlier)\s+(instructions|prompts?|rules)"
    r"|(system\s*prompt|系统提示词?|你现在是|you are now|</?(system|record|records|context|assistant|user)\b)",
    re.IGNORECASE,
)


def looks_like_instruction(sentence: str) -> bool:
    """A sentence in record text that addresses the assistant (prompt injection). Such sentences
    are data like any other, but they are never quoted as facts in an answer."""
    return bool(_INJECTION_RE.search(sentence or ""))


# ---------------------------------------------------------------- laws: 第X条
_NUM = "零〇一二三四五六七八九十百千两0-9"
ARTICLE_RE = re.compile(rf"(?:^|(?<=[\n\r\s。；;:：]))(第[{_NUM}]+条)(?=[\s\u3000：:　]|之)")
CHAPTER_RE = re.compile(rf"(?m)^\s*(第[{_NUM}]+章)\s*([^\n]*)$")


def split_articles(text: str) -> list[tuple[str | None, str]]:
    """Split a law / regulation into [(article label, article text)]; text before the first
    article (title, preamble, chapter headings) gets label None. Cross references such as
    "依照本条例第十条规定" are not split points (an article number is followed by a space)."""
    text = (text or "").replace("\r\n", "\n")
    marks = list(ARTICLE_RE.finditer(text))
    if not marks:
        return [(None, text.strip())] if text.strip() else []
    out: list[tuple[str | None, str]] = []
    pre = text[: marks[0].start()].strip()
    if pre:
        out.append((None, pre))
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        body = text[m.start() : end]
        # a chapter heading that precedes the next article belongs to the next article, not this one
        body = CHAPTER_RE.sub("", body).strip()
        if body:
            out.append((m.group(1), body))
    return out

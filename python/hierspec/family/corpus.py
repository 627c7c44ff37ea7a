"""The bundled family's corpus: text for distillation, n-gram statistics, calibration, benchmarks.

Everything here comes with Python itself, so it is present on every machine that runs hierspec and
nothing is downloaded:

    pydoc        ``pydoc_data.topics``: the Python language reference topics that ``help()`` shows
                 (English technical prose, ~465 KB). License: PSF License Agreement (Python docs).
    stdlib       the ``.py`` source files of the running interpreter's standard library (code,
                 comments, docstrings; tests, IDLE, tkinter, lib2to3, ensurepip and the codec
                 tables of ``encodings`` left out).
                 License: PSF License Agreement.

Both depend on the Python version (3.11 here): the corpus fingerprint, which keys every cache
built from it, includes the version.

Split: a document is held out of training when the first 8 bytes of ``sha256("<source>/<name>")``,
read as an integer, are below ``heldout_fraction`` of 2^64; the first 8 bytes of
``sha256("validation/<source>/<name>")`` then put half of those in the validation split, the rest
in the held-out split. The split is deterministic, stable when documents are added, and the same
for every consumer: distillation and n-gram statistics read only the train split
(:func:`training_prompts`, :func:`training_texts`); calibration prompts for profiling
(:func:`calibration_prompts`) come only from the validation split, so measured acceptance rates
are those of text the drafts never saw, as in use; the benchmark prompts
(:func:`heldout_prompts`) come only from the held-out split.

Terms:
    document     one unit of text (a ~3000-character piece of a pydoc topic, one source file).
    prompt       a user message (instruction plus a grounding excerpt). Chat formatting happens
                 in :func:`hierspec.prompts.chat_input_ids`, with the target's own template.
"""

from __future__ import annotations

import ast
import hashlib
import sys
import sysconfig
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

SOURCES: tuple[str, ...] = ("pydoc", "stdlib")
DEFAULT_HELDOUT_FRACTION = 0.1
Split = Literal["train", "validation", "heldout"]
SPLITS: tuple[str, ...] = ("train", "validation", "heldout")

# Parts of the standard library left out: tests are huge and repetitive, the rest is GUI code or
# deprecated tooling that would skew the corpus towards one style.
_STDLIB_EXCLUDED_TOP = frozenset(
    {
        "test",
        "tests",
        "idlelib",
        "tkinter",
        "turtledemo",
        "lib2to3",
        "ensurepip",
        "site-packages",
        "dist-packages",
        "__pycache__",
        "venv",
        "encodings",
    }
)
# pydoc topics are split into pieces of about this many characters at paragraph boundaries, so a
# held-out split holds enough distinct prose for the benchmark prompts.
_PYDOC_CHUNK_CHARS = 3000


def _chunks(text: str, max_chars: int) -> list[str]:
    """``text`` cut at blank lines into pieces of at most about ``max_chars`` characters."""
    pieces: list[str] = []
    current = ""
    for paragraph in text.split("\n\n"):
        if current and len(current) + len(paragraph) + 2 > max_chars:
            pieces.append(current)
            current = paragraph
        else:
            current = f"{current}\n\n{paragraph}" if current else paragraph
    if current.strip():
        pieces.append(current)
    return [piece for piece in pieces if piece.strip()]


@dataclass(frozen=True)
class Document:
    """One unit of text from one source."""

    source: str
    name: str
    text: str

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {self.source!r}")


@dataclass(frozen=True)
class Prompt:
    """One user message built from a document: ``kind`` says which instruction it carries."""

    kind: str
    source: str
    name: str
    message: str


def _check_sources(sources: tuple[str, ...]) -> tuple[str, ...]:
    sources = tuple(sources)
    if not sources:
        raise ValueError("sources must name at least one source, got ()")
    for source in sources:
        if source not in SOURCES:
            raise ValueError(f"sources must be a subset of {SOURCES}, got {sources!r}")
    return sources


def _check_fraction(heldout_fraction: float) -> None:
    if not 0.0 < heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction must be in (0, 1), got {heldout_fraction!r}")


@cache
def _load_source(source: str) -> tuple[Document, ...]:
    if source == "pydoc":
        import pydoc_data.topics

        topics = pydoc_data.topics.topics
        return tuple(
            Document("pydoc", f"{name}/{index}", chunk)
            for name in sorted(topics)
            for index, chunk in enumerate(_chunks(topics[name], _PYDOC_CHUNK_CHARS))
        )
    if source == "stdlib":
        root = Path(sysconfig.get_paths()["stdlib"])
        documents = []
        for path in sorted(root.rglob("*.py")):
            relative = path.relative_to(root)
            if relative.parts[0] in _STDLIB_EXCLUDED_TOP or {"test", "tests"} & set(relative.parts):
                continue
            try:
                text = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            if text.strip():
                documents.append(Document("stdlib", relative.as_posix(), text))
        return tuple(documents)
    raise ValueError(f"source must be one of {SOURCES}, got {source!r}")


def load_documents(sources: tuple[str, ...] = SOURCES) -> tuple[Document, ...]:
    """All documents of ``sources``, in a fixed order (source, then name)."""
    documents: list[Document] = []
    for source in _check_sources(sources):
        documents.extend(_load_source(source))
    return tuple(documents)


def split_of(document: Document, heldout_fraction: float = DEFAULT_HELDOUT_FRACTION) -> Split:
    """The split ``document`` belongs to (see the module docstring for the rule)."""
    _check_fraction(heldout_fraction)

    def unit(prefix: str) -> float:  # the first 8 bytes of the hash as a fraction of 2^64
        digest = hashlib.sha256(f"{prefix}{document.source}/{document.name}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    if unit("") >= heldout_fraction:
        return "train"
    return "validation" if unit("validation/") < 0.5 else "heldout"


def documents(
    split: Split,
    sources: tuple[str, ...] = SOURCES,
    heldout_fraction: float = DEFAULT_HELDOUT_FRACTION,
) -> tuple[Document, ...]:
    """The documents of one split, in the fixed order of :func:`load_documents`."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return tuple(d for d in load_documents(sources) if split_of(d, heldout_fraction) == split)


@cache
def fingerprint(
    sources: tuple[str, ...] = SOURCES, heldout_fraction: float = DEFAULT_HELDOUT_FRACTION
) -> str:
    """Short hash of the train split's content, the Python version and the split rule.

    Caches built from the corpus (n-gram statistics, distilled drafts) include it in their key,
    so a different interpreter or corpus rebuilds them instead of reusing stale ones.
    """
    digest = hashlib.sha256(f"{sys.version_info[:3]}|{heldout_fraction}".encode())
    for document in documents("train", sources, heldout_fraction):
        digest.update(f"{document.source}/{document.name}\0".encode())
        digest.update(hashlib.sha256(document.text.encode()).digest())
    return digest.hexdigest()[:16]


def training_texts(
    sources: tuple[str, ...] = SOURCES,
    max_chars: int | None = None,
    heldout_fraction: float = DEFAULT_HELDOUT_FRACTION,
) -> tuple[str, ...]:
    """Texts of the train split, interleaved across sources, cut at ``max_chars`` in total.

    Interleaving (one document of each source in turn) keeps a character budget from spending
    itself on the first source only.
    """
    if max_chars is not None and max_chars <= 0:
        raise ValueError(f"max_chars must be positive or None, got {max_chars!r}")
    per_source = [documents("train", (s,), heldout_fraction) for s in _check_sources(sources)]
    texts: list[str] = []
    total = 0
    for index in range(max(len(d) for d in per_source)):
        for source_documents in per_source:
            if index >= len(source_documents):
                continue
            text = source_documents[index].text
            if max_chars is not None and total + len(text) > max_chars:
                text = text[: max_chars - total]
            if text:
                texts.append(text)
                total += len(text)
            if max_chars is not None and total >= max_chars:
                return tuple(texts)
    return tuple(texts)


# ---------------------------------------------------------------------------------------------
# Prompts

_PROSE_INSTRUCTIONS: tuple[tuple[str, str], ...] = (
    ("summarize", "Summarize the following text in a few sentences.\n\n{excerpt}"),
    ("continue", "Continue the following text.\n\n{excerpt}"),
    (
        "explain",
        "Explain the following passage from the Python documentation to a beginner, "
        "with one short example.\n\n{excerpt}",
    ),
    (
        "questions",
        "Read the text below, then answer: what are its three most important points?\n\n{excerpt}",
    ),
)
_CODE_INSTRUCTIONS: tuple[tuple[str, str], ...] = (
    (
        "code_edit",
        "Add type hints to this Python function and return the whole function.\n\n"
        "```python\n{excerpt}\n```",
    ),
    (
        "code_explain",
        "Explain what this Python function does, step by step.\n\n```python\n{excerpt}\n```",
    ),
    (
        "code_docstring",
        "Write a docstring for this Python function and return the function with "
        "it.\n\n```python\n{excerpt}\n```",
    ),
    (
        "code_rename",
        "Rewrite this Python function with clearer variable names.\n\n```python\n{excerpt}\n```",
    ),
)


def _prose_excerpt(text: str, max_chars: int) -> str | None:
    """Leading paragraphs of ``text`` up to ``max_chars``; None if too short to be useful."""
    paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()]
    excerpt = ""
    for paragraph in paragraphs:
        candidate = f"{excerpt}\n\n{paragraph}" if excerpt else paragraph
        if len(candidate) > max_chars:
            break
        excerpt = candidate
    if not excerpt and paragraphs:
        excerpt = paragraphs[0][:max_chars]
    return excerpt if len(excerpt) >= max_chars // 4 else None


def _code_excerpts(text: str, min_lines: int = 6, max_lines: int = 30) -> list[str]:
    """Source of every top-level function or method with ``min_lines..max_lines`` lines."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return []
    lines = text.splitlines()
    excerpts = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno:
            start = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
            body = lines[start : node.end_lineno]
            if min_lines <= len(body) <= max_lines:
                indent = len(body[0]) - len(body[0].lstrip())
                excerpts.append("\n".join(line[indent:] for line in body))
    return excerpts


def _prompts(
    split: Split, count: int, max_excerpt_chars: int, heldout_fraction: float
) -> tuple[Prompt, ...]:
    if count <= 0:
        raise ValueError(f"count must be positive, got {count!r}")
    if max_excerpt_chars < 100:
        raise ValueError(f"max_excerpt_chars must be >= 100, got {max_excerpt_chars!r}")

    def ordered(source: str) -> list[Document]:
        # A fixed pseudo-random order (by hash) so the first prompts span the whole source.
        docs = documents(split, (source,), heldout_fraction)
        return sorted(docs, key=lambda d: hashlib.sha256(f"order/{d.name}".encode()).digest())

    prose: list[Prompt] = []
    for document in ordered("pydoc"):
        excerpt = _prose_excerpt(document.text, max_excerpt_chars)
        if excerpt is not None:
            kind, template = _PROSE_INSTRUCTIONS[len(prose) % len(_PROSE_INSTRUCTIONS)]
            prose.append(Prompt(kind, "pydoc", document.name, template.format(excerpt=excerpt)))
    code: list[Prompt] = []
    for document in ordered("stdlib"):
        candidates = [e for e in _code_excerpts(document.text) if len(e) <= max_excerpt_chars]
        if candidates:
            excerpt = candidates[len(code) % len(candidates)]
            kind, template = _CODE_INSTRUCTIONS[len(code) % len(_CODE_INSTRUCTIONS)]
            code.append(Prompt(kind, "stdlib", document.name, template.format(excerpt=excerpt)))
    # Alternate prose and code so that any prefix of the list mixes both kinds of task.
    merged: list[Prompt] = []
    for index in range(max(len(prose), len(code))):
        merged.extend(group[index] for group in (prose, code) if index < len(group))
    if len(merged) < count:
        raise ValueError(f"count must be <= {len(merged)} for the {split} split, got {count!r}")
    return tuple(merged[:count])


def heldout_prompts(
    count: int = 24,
    max_excerpt_chars: int = 1200,
    heldout_fraction: float = DEFAULT_HELDOUT_FRACTION,
) -> tuple[Prompt, ...]:
    """``count`` benchmark prompts from the held-out split (never used for training/profiling).

    Half are prose tasks on Python documentation (summarize, continue, explain, key points), half
    code tasks on standard-library functions (add type hints, explain, docstring, rename): all
    grounded in the prompt, the setting where prompt lookup helps.
    """
    return _prompts("heldout", count, max_excerpt_chars, heldout_fraction)


def calibration_prompts(
    count: int = 16,
    max_excerpt_chars: int = 1200,
    heldout_fraction: float = DEFAULT_HELDOUT_FRACTION,
) -> tuple[Prompt, ...]:
    """Prompts of the same kinds as :func:`heldout_prompts`, from the validation split (profiling,
    tuning baselines): text neither the drafts nor the n-gram statistics were built from."""
    return _prompts("validation", count, max_excerpt_chars, heldout_fraction)


def training_prompts(
    count: int = 16,
    max_excerpt_chars: int = 1200,
    heldout_fraction: float = DEFAULT_HELDOUT_FRACTION,
) -> tuple[Prompt, ...]:
    """Prompts of the same kinds as :func:`heldout_prompts`, from the train split (distillation)."""
    return _prompts("train", count, max_excerpt_chars, heldout_fraction)

"""The knowledge base: playbooks and help articles, chunked by heading, embedded
offline (MiniLM in numpy) into chromadb: a PersistentClient in the data directory, or
a chroma server with CHROMA_URL. Retrieved text is data: it never grants a scope or
changes a limit."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from autopilot.runtime.config import Settings
from autopilot.runtime.contracts.hashing import sha256_hex
from autopilot.runtime.kb.embed import MiniLMEmbeddingFunction

COLLECTION = "knowledge"
MAX_CHARS = 1200


@dataclass(frozen=True)
class Chunk:
    id: str
    text: str
    source: str
    heading: str


def shipped_dir() -> Path:
    return Path(str(resources.files("autopilot.knowledge")))


def client(settings: Settings) -> Any:
    import chromadb  # noqa: PLC0415 - 0.7 s to import; only the knowledge base needs it

    if settings.chroma_url:
        u = urlparse(settings.chroma_url)
        return chromadb.HttpClient(
            host=u.hostname or "localhost", port=u.port or 8000, ssl=u.scheme == "https"
        )
    path = settings.data_dir / "chroma"
    path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(path))


def collection(settings: Settings) -> Any:
    return client(settings).get_or_create_collection(
        COLLECTION, embedding_function=MiniLMEmbeddingFunction(), metadata={"hnsw:space": "cosine"}
    )


def chunk_file(path: Path, root: Path) -> list[Chunk]:
    """Sections under each markdown heading (the title is kept as context), split
    further by paragraphs past MAX_CHARS."""
    source = str(path.relative_to(root))
    title, heading, lines = "", "", []
    sections: list[tuple[str, str]] = []
    for line in path.read_text().splitlines():
        m = re.match(r"^(#{1,6})\s+(.*)$", line)
        if m:
            if "".join(lines).strip():
                sections.append((heading or title, "\n".join(lines).strip()))
            lines = []
            if len(m.group(1)) == 1:
                title = m.group(2).strip()
            heading = m.group(2).strip() if len(m.group(1)) > 1 else ""
        else:
            lines.append(line)
    if "".join(lines).strip():
        sections.append((heading or title, "\n".join(lines).strip()))
    chunks = []
    for heading, body in sections:
        parts, current = [], ""
        for para in re.split(r"\n\s*\n", body):
            if current and len(current) + len(para) > MAX_CHARS:
                parts.append(current)
                current = ""
            current = f"{current}\n\n{para}".strip()
        parts.append(current)
        for i, part in enumerate(parts):
            text = (
                f"{title} — {heading}\n{part}"
                if heading and heading != title
                else f"{title}\n{part}"
            )
            chunks.append(
                Chunk(
                    id=sha256_hex([source, heading, i])[:24],
                    text=text,
                    source=source,
                    heading=heading,
                )
            )
    return chunks


def ingest(settings: Settings, folder: Path) -> dict[str, int]:
    files = sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in (".md", ".txt") and p.is_file()
    )
    if not files:
        raise ValueError(f"no .md or .txt files under {folder}")
    chunks = [c for f in files for c in chunk_file(f, folder)]
    col = collection(settings)
    col.upsert(
        ids=[c.id for c in chunks],
        documents=[c.text for c in chunks],
        metadatas=[{"source": c.source, "heading": c.heading} for c in chunks],
    )
    return {"files": len(files), "chunks": len(chunks)}


def ensure_shipped(settings: Settings) -> int:
    """The knowledge base that ships with the product, ingested once."""
    col = collection(settings)
    if col.count():
        return 0
    return ingest(settings, shipped_dir())["chunks"]


def search(settings: Settings, query: str, k: int = 3) -> list[dict[str, Any]]:
    res = collection(settings).query(query_texts=[query], n_results=k)
    return [
        {
            "text": doc,
            "source": meta["source"],
            "heading": meta["heading"],
            "score": round(1 - float(dist), 4),
        }
        for doc, meta, dist in zip(
            res["documents"][0], res["metadatas"][0], res["distances"][0], strict=True
        )
    ]


def recall_at(settings: Settings, labelled: list[dict[str, str]], k: int = 3) -> dict[str, Any]:
    hits, misses = 0, []
    for item in labelled:
        sources = {r["source"] for r in search(settings, item["query"], k)}
        if item["source"] in sources:
            hits += 1
        else:
            misses.append(item["query"])
    return {
        "k": k,
        "queries": len(labelled),
        "hits": hits,
        "recall": round(hits / len(labelled), 3),
        "misses": misses,
    }

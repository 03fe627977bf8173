"""Profiles in: validate, detect languages, chunk, and write each actor in one transaction."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from service.audit import Who
from service.domain import Actor, Document, Owner
from service.errors import ClusterMatchError, FieldProblem, InvalidInput
from service.store import ChunkDraft, ProfileStore
from service.text import Chunker, detect_language

LOCAL = Owner()
WRITE_BATCH = 200
"""Validated profiles written per transaction during a file import (each stays all-or-nothing)."""


def content_hash(text: str) -> str:
    """Key of the embedding cache: identical passages are embedded once, whoever owns them."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def document_text(doc: Document) -> str:
    """The text that is chunked and embedded: the title belongs to what a document says, and a
    patent's classes (`F03D 1/06`) make it findable by class in lexical search."""
    text = f"{doc.title}\n{doc.text}" if doc.title else doc.text
    return f"{text}\n{' '.join(doc.codes)}" if doc.codes else text


@dataclass(frozen=True)
class LineError:
    line: int
    actor_id: str | None
    message: str


@dataclass(frozen=True)
class LineOutcome:
    line: int
    actor_id: str | None
    status: Literal["created", "replaced", "rejected"]
    message: str | None = None


@dataclass
class IngestReport:
    outcomes: list[LineOutcome] = field(default_factory=list)
    """One per non-blank line, in line order."""
    warnings: list[LineError] = field(default_factory=list)

    def _count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def created(self) -> int:
        return self._count("created")

    @property
    def replaced(self) -> int:
        return self._count("replaced")

    @property
    def stored(self) -> int:
        return self.created + self.replaced

    @property
    def errors(self) -> list[LineError]:
        return [
            LineError(o.line, o.actor_id, o.message or "")
            for o in self.outcomes
            if o.status == "rejected"
        ]


class Ingestor:
    """Turns validated actors into stored actors with chunks. Cheap to construct."""

    def __init__(self, store: ProfileStore, chunker: Chunker) -> None:
        self.store = store
        self.chunker = chunker
        self.written: list[Callable[[Sequence[str]], object]] = []
        """Called with the ids of actors after each committed write (e.g. to refresh a delta)."""

    def prepare(self, actors: Sequence[Actor]) -> list[tuple[Actor, list[ChunkDraft]]]:
        """Chunk every document of `actors` (language detected where not given)."""
        jobs: list[tuple[str, str]] = []
        owners: list[tuple[int, Document, str]] = []
        for position, actor in enumerate(actors):
            for doc in actor.documents:
                text = document_text(doc)
                language = doc.language or detect_language(doc.text)
                jobs.append((text, language))
                owners.append((position, doc, language))
        pieces = self.chunker.chunk_many(jobs)
        drafts: list[list[ChunkDraft]] = [[] for _ in actors]
        for (position, doc, language), texts in zip(owners, pieces, strict=True):
            drafts[position].extend(
                ChunkDraft(doc.id, ordinal, text, content_hash(text), language)
                for ordinal, text in enumerate(texts)
            )
        return list(zip(actors, drafts, strict=True))

    def upsert(
        self, actors: Sequence[Actor], owner: Owner = LOCAL, who: Who | None = None
    ) -> list[bool]:
        """Store `actors` (audited as `who`'s writes, when given); per actor True when created,
        False when replaced."""
        created = self.store.upsert_actors(self.prepare(actors), owner, who)
        for listener in self.written:
            listener([a.id for a in actors])
        return created

    def ingest_lines(
        self,
        lines: Iterable[str],
        on_line: Callable[[], None] | None = None,
        owner: Owner = LOCAL,
        who: Who | None = None,
    ) -> IngestReport:
        """Import JSON lines: bad lines are reported with their number, good ones are stored."""
        report = IngestReport()
        batch: list[tuple[int, Actor]] = []
        seen_in_file: dict[str, int] = {}
        for number, raw in enumerate(lines, start=1):
            if on_line is not None:
                on_line()
            if not raw.strip():
                continue
            try:
                actor = parse_line(raw)
            except InvalidInput as exc:
                report.outcomes.append(LineOutcome(number, _id_of(raw), "rejected", str(exc)))
                continue
            if actor.id in seen_in_file:
                report.warnings.append(
                    LineError(
                        number,
                        actor.id,
                        f"id: {actor.id!r} already appeared on line {seen_in_file[actor.id]}; "
                        f"this line replaces it",
                    )
                )
            seen_in_file[actor.id] = number
            batch.append((number, actor))
            if len(batch) >= WRITE_BATCH:
                self._flush(batch, report, owner, who)
                batch = []
        self._flush(batch, report, owner, who)
        report.outcomes.sort(key=lambda o: o.line)
        return report

    def _flush(
        self,
        batch: list[tuple[int, Actor]],
        report: IngestReport,
        owner: Owner,
        who: Who | None,
    ) -> None:
        if not batch:
            return
        try:
            created = self.upsert([actor for _, actor in batch], owner, who)
        except ClusterMatchError as exc:
            # Should not happen for validated profiles; keep the failure per line, not per file.
            report.outcomes.extend(LineOutcome(n, a.id, "rejected", str(exc)) for n, a in batch)
            return
        report.outcomes.extend(
            LineOutcome(n, a.id, "created" if new else "replaced")
            for (n, a), new in zip(batch, created, strict=True)
        )


def parse_line(raw: str) -> Actor:
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            [FieldProblem("", f"not valid JSON ({exc.msg} at column {exc.colno})")]
        ) from None
    return Actor.parse(data)


def _id_of(raw: str) -> str | None:
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        return None
    value = data.get("id") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None

#!/usr/bin/env python3
"""Build clustermatch's demo actor profiles from the CORDIS 2014 slice.

Reads the participations in `cordis/cordis-plus-2014.csv` and joins them on `project_id` with
the project lists `cordis/h2020-projects.xlsx` and `cordis/fp7-projects.xlsx` (title and topic
description). Writes one actor profile per organisation (`pic`) as a JSON line into a
gzip-compressed file. Each project the organisation took part in becomes one document:
"<Project Title>. <Topic description>".

The output is deterministic: the same input gives the same bytes (sorted actors and documents,
fixed key order, gzip header without timestamp or file name).

Conversion rules:
  * kind: HES -> university, REC -> research, PRC -> company, PUB -> public, OTH/NA -> other
  * country: ISO 3166 alpha-2 (UK -> GB, EL -> GR); `region` keeps the CORDIS code (UK, EL)
  * 'NA' means missing everywhere (including country_code, although NA is also Namibia);
    organisations without any known country are skipped, as are rows without a pic
  * an organisation listed with different attributes in different rows gets the most frequent
    non-missing value of each attribute (ties: the most recent participation)
  * url only when it starts with http:// or https:// and contains no whitespace
  * duplicate participations (same pic and project) give one document
  * partners: the other organisations (kept as actors) of the same projects, sorted by id

Data: CORDIS, European Commission, reused under CC BY 4.0 (see data/demo/SOURCES.md).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import re
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_INPUT_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT_OUTPUT = REPO_ROOT / "data" / "demo" / "actors.jsonl.gz"

PARTICIPATIONS = Path("cordis") / "cordis-plus-2014.csv"
PROJECT_LISTS = (Path("cordis") / "h2020-projects.xlsx", Path("cordis") / "fp7-projects.xlsx")

MISSING = "NA"
KINDS = {
    "HES": "university",
    "REC": "research",
    "PRC": "company",
    "PUB": "public",
    "OTH": "other",
}
ALL_KINDS = ("company", "research", "university", "public", "other")
EU_TO_ISO = {"UK": "GB", "EL": "GR"}

IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}$")
COUNTRY_CODE = re.compile(r"^[A-Z]{2}$")
URL = re.compile(r"^https?://\S+$")
# A topic "description" that is really a code: one upper-case token (INNOSUP, EURATOM) or one
# token with a digit in it (ICT-2013.3.4).
CODE_LIKE = re.compile(r"^(?:[A-Z0-9._/-]+|\S*\d\S*)$")
SENTENCE_END = re.compile(r"[.!?][\"'”’)\]]*$")

MAX_NAME_CHARS = 500
MAX_DOCUMENTS_PER_ACTOR = 1_000
MAX_PARTNERS = 5_000


def clean(value: Any) -> str:
    """Collapse whitespace; map None and CORDIS's 'NA' to the empty string."""
    if value is None:
        return ""
    text = " ".join(str(value).split())
    return "" if text == MISSING else text


@dataclass(frozen=True)
class Project:
    title: str
    topic_description: str
    topic_code: str


@dataclass
class Organisation:
    pic: str
    names: Counter[str] = field(default_factory=Counter)
    types: Counter[str] = field(default_factory=Counter)
    countries: Counter[str] = field(default_factory=Counter)
    urls: Counter[str] = field(default_factory=Counter)
    # value -> most recent (start_date, project_id) it was seen with, to break ties.
    last_seen: dict[tuple[str, str], tuple[str, int]] = field(default_factory=dict)
    projects: set[str] = field(default_factory=set)

    def note(
        self, attribute: str, counter: Counter[str], value: str, when: tuple[str, int]
    ) -> None:
        if not value:
            return
        counter[value] += 1
        key = (attribute, value)
        self.last_seen[key] = max(self.last_seen.get(key, when), when)

    def pick(self, attribute: str, counter: Counter[str]) -> str:
        """The most frequent value, ties broken by the most recent participation, then by value."""
        if not counter:
            return ""
        return max(
            counter,
            key=lambda v: (counter[v], self.last_seen[(attribute, v)], v),
        )


@dataclass
class Stats:
    rows: int = 0
    rows_without_pic: int = 0
    duplicate_participations: int = 0
    organisations: int = 0
    skipped_no_country: int = 0
    skipped_bad_id: int = 0
    skipped_no_name: int = 0
    skipped_no_documents: int = 0
    projects: int = 0
    projects_matched: Counter[str] = field(default_factory=Counter)
    documents: int = 0
    documents_truncated: int = 0
    names_truncated: int = 0
    partner_links: int = 0
    partners_truncated: int = 0
    kinds: Counter[str] = field(default_factory=Counter)


def read_project_lists(paths: Iterable[Path], wanted: set[str]) -> dict[str, tuple[str, Project]]:
    """Project id -> (source file name, project) for the wanted ids, from the CORDIS xlsx lists."""
    from openpyxl import load_workbook

    found: dict[str, tuple[str, Project]] = {}
    for path in paths:
        workbook = load_workbook(path, read_only=True, data_only=True)
        try:
            rows = workbook.worksheets[0].iter_rows(values_only=True)
            header = [clean(h).lower() for h in next(rows)]
            col = {name: i for i, name in enumerate(header)}
            for required in ("project nbr", "project title", "topic description", "topic code"):
                if required not in col:
                    raise SystemExit(f"{path}: no column {required!r} (found {header})")
            for row in rows:
                number = row[col["project nbr"]]
                if number is None:
                    continue
                project_id = clean(int(number) if isinstance(number, float) else number)
                if project_id not in wanted or project_id in found:
                    continue
                found[project_id] = (
                    path.name,
                    Project(
                        title=clean(row[col["project title"]]),
                        topic_description=clean(row[col["topic description"]]),
                        topic_code=clean(row[col["topic code"]]),
                    ),
                )
        finally:
            workbook.close()
    return found


def document_text(title: str, topic_description: str, topic_code: str) -> str:
    """'<title>. <topic description>', leaving out a description that adds nothing."""
    description = topic_description
    if description and (
        description.casefold() in (title.casefold(), topic_code.casefold())
        or CODE_LIKE.match(description)
    ):
        description = ""
    if not title:
        return description
    if not description:
        return title
    separator = " " if SENTENCE_END.search(title) else ". "
    return f"{title}{separator}{description}"


def read_participations(
    path: Path, stats: Stats
) -> tuple[dict[str, Organisation], dict[str, dict[str, str]]]:
    """Organisations by pic, and the first CSV row of each project (the fallback texts)."""
    organisations: dict[str, Organisation] = {}
    project_rows: dict[str, dict[str, str]] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            stats.rows += 1
            pic = clean(row["pic"])
            project_id = clean(row["project_id"])
            if not project_id:
                continue
            project_rows.setdefault(project_id, row)
            if not pic:
                stats.rows_without_pic += 1
                continue
            org = organisations.setdefault(pic, Organisation(pic))
            if project_id in org.projects:
                stats.duplicate_participations += 1
            org.projects.add(project_id)
            when = (clean(row.get("start_date")), int(project_id) if project_id.isdigit() else 0)
            org.note("name", org.names, clean(row["legal_name"]), when)
            org.note("type", org.types, clean(row["legal_entity_type"]), when)
            org.note("country", org.countries, clean(row["country_code"]).upper(), when)
            url = clean(row["legal_url"])
            if URL.match(url):
                org.note("url", org.urls, url, when)
    return organisations, project_rows


def build_actors(
    input_dir: Path,
    stats: Stats,
    participations: Path = PARTICIPATIONS,
    keep_no_country: bool = False,
) -> Iterator[dict[str, Any]]:
    """Actor profiles from one participations file. With `keep_no_country`, an organisation with
    no known country is kept, without `country` and `region`, instead of being skipped."""
    organisations, project_rows = read_participations(input_dir / participations, stats)
    stats.projects = len(project_rows)
    projects = read_project_lists((input_dir / p for p in PROJECT_LISTS), set(project_rows))
    for source, _ in projects.values():
        stats.projects_matched[source] += 1

    texts: dict[str, tuple[str, str]] = {}  # project id -> (document title, text)
    for project_id, row in project_rows.items():
        acronym = clean(row["project_acronym"])
        topic_description = clean(row["topic_description"])
        topic_code = clean(row["topic_code"])
        if project_id in projects:
            project = projects[project_id][1]
            title = project.title or acronym
            topic_description = project.topic_description or topic_description
            topic_code = project.topic_code or topic_code
        else:
            title = acronym
        texts[project_id] = (acronym or title, document_text(title, topic_description, topic_code))

    kept: list[tuple[dict[str, Any], set[str]]] = []
    for pic in sorted(organisations):
        org = organisations[pic]
        stats.organisations += 1
        actor_id = f"pic:{pic}"
        cordis_country = org.pick("country", org.countries)
        name = org.pick("name", org.names)
        if not IDENTIFIER.match(actor_id):
            stats.skipped_bad_id += 1
            continue
        if not COUNTRY_CODE.match(cordis_country):
            stats.skipped_no_country += 1
            if not keep_no_country:
                continue
            cordis_country = ""
        if not name:
            stats.skipped_no_name += 1
            continue
        if len(name) > MAX_NAME_CHARS:
            stats.names_truncated += 1
            name = name[:MAX_NAME_CHARS].rstrip()
        kind = KINDS.get(org.pick("type", org.types), "other")

        documents = []
        for project_id in sorted(org.projects):
            title, text = texts[project_id]
            document_id = f"project:{project_id}"
            if not text or not IDENTIFIER.match(document_id):
                continue
            document: dict[str, Any] = {"id": document_id, "kind": "description"}
            if title:
                document["title"] = title
            document["text"] = text
            document["language"] = "en"
            documents.append(document)
        documents.sort(key=lambda d: str(d["id"]))
        if len(documents) > MAX_DOCUMENTS_PER_ACTOR:
            stats.documents_truncated += len(documents) - MAX_DOCUMENTS_PER_ACTOR
            documents = documents[:MAX_DOCUMENTS_PER_ACTOR]
        if not documents:
            stats.skipped_no_documents += 1
            continue

        actor: dict[str, Any] = {"id": actor_id, "name": name, "kind": kind}
        if cordis_country:
            actor["country"] = EU_TO_ISO.get(cordis_country, cordis_country)
            actor["region"] = cordis_country
        url = org.pick("url", org.urls)
        if url:
            actor["url"] = url
        actor["documents"] = documents
        stats.kinds[kind] += 1
        stats.documents += len(documents)
        kept.append((actor, org.projects))
    yield from with_partners(kept, stats)


def with_partners(
    kept: list[tuple[dict[str, Any], set[str]]], stats: Stats
) -> Iterator[dict[str, Any]]:
    """Fill each actor's `partners` with the other kept actors of its projects (before its
    documents, so the key order stays that of the README's profile example)."""
    members: dict[str, set[str]] = {}
    for actor, projects in kept:
        for project_id in projects:
            members.setdefault(project_id, set()).add(actor["id"])
    for actor, projects in kept:
        partners = sorted({p for pid in projects for p in members[pid]} - {actor["id"]})
        if len(partners) > MAX_PARTNERS:
            stats.partners_truncated += len(partners) - MAX_PARTNERS
            partners = partners[:MAX_PARTNERS]
        documents = actor.pop("documents")
        if partners:
            actor["partners"] = partners
            stats.partner_links += len(partners)
        actor["documents"] = documents
        yield actor


def write_jsonl_gz(actors: Iterable[dict[str, Any]], output: Path) -> None:
    """Write JSON lines, gzip-compressed and reproducible, replacing `output` atomically."""
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{output.name}.", dir=output.parent)
    tmp = Path(tmp_name)
    try:
        with (
            os.fdopen(fd, "wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as gz,
        ):
            for actor in actors:
                line = json.dumps(actor, ensure_ascii=False, separators=(",", ":"))
                gz.write(line.encode("utf-8") + b"\n")
        tmp.chmod(0o644)
        tmp.replace(output)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def print_summary(stats: Stats, output: Path) -> None:
    matched = sum(stats.projects_matched.values())
    by_file = ", ".join(f"{name} {n}" for name, n in sorted(stats.projects_matched.items()))
    lines = [
        f"wrote {display_path(output)} ({output.stat().st_size:,} bytes)",
        f"actors:     {stats.kinds.total():,} of {stats.organisations:,} organisations",
        f"documents:  {stats.documents:,}",
        f"partners:   {stats.partner_links:,} links (other organisations of the same projects)",
        "kinds:      " + ", ".join(f"{k} {stats.kinds[k]:,}" for k in ALL_KINDS),
        f"skipped:    {stats.skipped_no_country:,} organisations with missing country ('NA')",
        f"            {stats.rows_without_pic:,} participation rows without an organisation id",
        f"            {stats.duplicate_participations:,} duplicate participations merged",
        f"projects:   {stats.projects:,}; matched in xlsx {matched:,} ({by_file or 'none'}); "
        f"{stats.projects - matched:,} fell back to the CSV acronym and topic",
        f"input rows: {stats.rows:,}",
    ]
    if stats.skipped_bad_id or stats.skipped_no_name or stats.skipped_no_documents:
        lines.append(
            f"also skipped: {stats.skipped_bad_id} with an invalid id, "
            f"{stats.skipped_no_name} without a name, {stats.skipped_no_documents} without text"
        )
    if stats.names_truncated or stats.documents_truncated or stats.partners_truncated:
        lines.append(
            f"truncated: {stats.names_truncated} names, {stats.documents_truncated} documents, "
            f"{stats.partners_truncated} partners"
        )
    print("\n".join(lines))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="build_demo_data.py",
        description=(
            "Convert the CORDIS 2014 participations (FP7/H2020 projects that started in 2014) "
            "into clustermatch actor profiles: one per organisation (pic), one 'description' "
            "document per project it took part in (project title and topic description). "
            "Output is gzip-compressed JSON lines, byte-for-byte reproducible."
        ),
        epilog=(
            f"Reads {PARTICIPATIONS} and {', '.join(str(p) for p in PROJECT_LISTS)} under "
            "--input-dir. Organisations with a missing country ('NA') are skipped. "
            "Data: CORDIS, European Commission, CC BY 4.0; see data/demo/SOURCES.md."
        ),
    )
    parser.add_argument(
        "--input-dir",
        type=Path,
        default=DEFAULT_INPUT_DIR,
        metavar="DIR",
        help="directory holding cordis/ (default: %(default)s)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        metavar="FILE",
        help="where to write the .jsonl.gz file (default: %(default)s)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    input_dir: Path = args.input_dir
    missing = [p for p in (PARTICIPATIONS, *PROJECT_LISTS) if not (input_dir / p).is_file()]
    if missing:
        print(
            f"error: {', '.join(str(input_dir / p) for p in missing)} not found (use --input-dir)",
            file=sys.stderr,
        )
        return 2
    stats = Stats()
    write_jsonl_gz(build_actors(input_dir, stats), args.output)
    print_summary(stats, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())

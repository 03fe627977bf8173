#!/usr/bin/env python3
"""Build the data of the temporal evaluation ("first-time collaborations") from CORDIS.

Writes into data/temporal/:

* `actors-2007.jsonl.gz`: one profile per organisation taking part in an FP7 project that started
  in 2007 (`cordis/cordis-plus-2007.csv`), built exactly like the demo profiles
  (`scripts/build_demo_data.py`: one `description` document per project, "<title>. <topic>"
  joined from `cordis/fp7-projects.xlsx` and `cordis/h2020-projects.xlsx`). Unlike the demo,
  an organisation without a known country is kept, without `country` and `region`.
* `projects-2014.jsonl.gz`: the projects that started in 2014 (`cordis/cordis-plus-2014.csv`) in
  which at least two of those organisations take part: `{"id", "partners", "members"}`, where
  `partners` counts every participating organisation (a row without an organisation id counts
  as one) and `members` lists the 2007 organisations among them (`pic:<pic>`, sorted).

The evaluation (service/evaluation_temporal.py) derives its truth from these two files: pairs
of 2007 organisations that meet in a 2014 project of at most 60 partners without having shared a
2007 project. Both files are byte-for-byte reproducible.

Data: CORDIS, European Commission, reused under CC BY 4.0 (see data/temporal/SOURCES.md).
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from build_demo_data import (
    DEFAULT_INPUT_DIR,
    PROJECT_LISTS,
    REPO_ROOT,
    Stats,
    build_actors,
    clean,
    display_path,
    write_jsonl_gz,
)

PAST = Path("cordis") / "cordis-plus-2007.csv"
FUTURE = Path("cordis") / "cordis-plus-2014.csv"
DEFAULT_OUTPUT_DIR = REPO_ROOT / "data" / "temporal"
ACTORS_FILE = "actors-2007.jsonl.gz"
PROJECTS_FILE = "projects-2014.jsonl.gz"


def future_projects(path: Path, known: set[str]) -> list[dict[str, Any]]:
    """2014 projects with at least two of the `known` actor ids among their participants."""
    pics: dict[str, set[str]] = defaultdict(set)
    anonymous: dict[str, int] = defaultdict(int)
    with path.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            project = clean(row["project_id"])
            if not project:
                continue
            pic = clean(row["pic"])
            if pic:
                pics[project].add(f"pic:{pic}")
            else:
                anonymous[project] += 1
    out = []
    for project in sorted(pics, key=lambda p: (len(p), p)):
        members = sorted(pics[project] & known)
        if len(members) >= 2:
            partners = len(pics[project]) + anonymous[project]
            out.append({"id": project, "partners": partners, "members": members})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="build_temporal_data.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--input-dir", type=Path, default=DEFAULT_INPUT_DIR, metavar="DIR")
    parser.add_argument("--output-dir", type=Path, default=DEFAULT_OUTPUT_DIR, metavar="DIR")
    args = parser.parse_args(argv)
    needed = (PAST, FUTURE, *PROJECT_LISTS)
    missing = [str(args.input_dir / p) for p in needed if not (args.input_dir / p).is_file()]
    if missing:
        print(f"error: {', '.join(missing)} not found (use --input-dir)", file=sys.stderr)
        return 2
    stats = Stats()
    actors = list(build_actors(args.input_dir, stats, participations=PAST, keep_no_country=True))
    projects = future_projects(args.input_dir / FUTURE, {a["id"] for a in actors})
    actors_out = args.output_dir / ACTORS_FILE
    projects_out = args.output_dir / PROJECTS_FILE
    write_jsonl_gz(actors, actors_out)
    write_jsonl_gz(projects, projects_out)
    no_country = sum("country" not in a for a in actors)
    print(
        f"wrote {display_path(actors_out)}: {len(actors)} actors, {stats.documents} documents "
        f"({stats.projects} projects of 2007; {no_country} actors without a country)\n"
        f"wrote {display_path(projects_out)}: {len(projects)} projects of 2014 with >= 2 of them"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

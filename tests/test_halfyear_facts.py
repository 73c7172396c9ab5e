"""What makes the half-yearly report fast stays right (docs/performance.md): ``log_facts``, the
facts of each entry written in the append's own transaction and backfilled by migration 0023
on SQLite and PostgreSQL; and the auditor's runs of leaves, each read, hashed and counted by a
worker, combined into the tree's root and the figures, from the log over HTTP or from a
downloaded bundle."""

from __future__ import annotations

import base64
import hashlib
import json
import random
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from litestar import Litestar
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError

from audit.bundle import export_bundle
from audit.client import LogClient
from audit.report import AuditError, Policy
from cli.main import main
from ledger.entry import EntryRequest, Posting, canonical_json
from ledger.facts import FACT_COLUMNS, facts_of_leaf
from ledger.log import Log
from ledger.merkle import Frontier
from migrations.runner import alembic_config, current_revision, head_revision
from reports.halfyear import iter_leaves, public_figures
from reports.public import PublicFigures, half_bounds
from reports.recompute import verify_report
from reports.runs import BundleLog, FileLeaves, Run, push
from tests.conftest import migrate_as_owner, owner_url
from tests.helpers import deposit, drop_append_only_triggers, member, raw_sql
from tests.test_halfyear import app, principal, url, world
from tests.test_halfyear_fast import Clock, build_world, clock, timed_log

__all__ = ["app", "clock", "timed_log", "url"]  # fixtures of the modules above used here

ZONE = "Asia/Shanghai"
ODD: list[dict[str, Any]] = [
    {"service": "meal", "org": "org-1", "minutes": 60},
    {"service": "护理", "org": "x" * 65, "minutes": "60"},
    {"service": "nul\u0000", "org": 5, "minutes": True},
    {"service": "", "org": None},
    {},
]


def _facts_rows(url: str) -> list[tuple[Any, ...]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            columns = ", ".join(FACT_COLUMNS)
            return [
                tuple(row)
                for row in conn.execute(text(f"SELECT {columns} FROM log_facts ORDER BY seq"))
            ]
    finally:
        engine.dispose()


def _expected_rows(log: Log) -> list[tuple[Any, ...]]:
    return [
        tuple(facts_of_leaf(seq, leaf)[c] for c in FACT_COLUMNS)
        for seq, leaf in enumerate(iter_leaves(log, log.size()))
    ]


def _deposit(n: int, body: dict[str, Any]) -> EntryRequest:
    postings = (Posting("t:issuance", -30), Posting(f"t:member:m{n % 3}", 30))
    return EntryRequest("deposit", f"d{n}", postings, {**body, "weight": 1000})


def test_each_append_writes_its_facts_in_the_same_transaction(log: Log, db_url: str) -> None:
    for n, body in enumerate(ODD):
        log.append(_deposit(n, body))
    log.append(EntryRequest("gift", "g", (Posting("t:member:m0", -5), Posting("t:member:m1", 5))))
    log.append(EntryRequest("policy", "p", body={"bank": "t"}))
    rows = _facts_rows(db_url)
    assert rows == _expected_rows(log)
    assert rows[0] == (0, "deposit", "t", 30, "meal", "org-1", 60)
    # names the report cannot show and minutes it cannot count are kept as NULL, never refused
    assert rows[1] == (1, "deposit", "t", 30, None, None, None)
    assert rows[2] == (2, "deposit", "t", 30, None, None, None)
    assert rows[5] == (5, "gift", "t", 5, None, None, None)
    assert rows[6] == (6, "policy", None, 0, None, None, None)

    # A facts row that cannot be written takes its entry with it: nothing half-written.
    size = log.size()
    raw_sql(db_url, f"INSERT INTO log_facts (seq, kind, credited) VALUES ({size}, 'x', 0)")
    with pytest.raises(IntegrityError, match="log_facts"):
        log.append(_deposit(9, ODD[0]))
    assert log.size() == size
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM log_entries")).scalar_one() == size
            assert (
                conn.execute(
                    text("SELECT count(*) FROM log_postings WHERE seq >= :s"), {"s": size}
                ).scalar_one()
                == 0
            )
    finally:
        engine.dispose()


def test_migration_0023_backfills_an_existing_log(
    timed_log: Log, clock: Clock, db_url: str
) -> None:
    """A log written before 0023 (its table dropped with the migration) gets every entry's
    facts from its leaves, and the report sums them to the leaf-by-leaf figures."""
    build_world(timed_log, clock, seed=23, entries=300)
    expected = _expected_rows(timed_log)
    assert _facts_rows(db_url) == expected
    engine = create_engine(owner_url(db_url))
    try:
        with engine.connect() as conn, conn.begin():
            command.downgrade(alembic_config(conn), "0021_open_transfers")
    finally:
        engine.dispose()
    assert current_revision(db_url) == "0021_open_transfers"
    migrate_as_owner(db_url)  # under the migration lock, as every upgrade
    assert current_revision(db_url) == head_revision()
    assert _facts_rows(db_url) == expected
    leaves = list(iter_leaves(timed_log, timed_log.size()))
    for half in ("2023-H1", "2023-H2", "2024-H1"):
        start, end = half_bounds(half, ZONE)
        reference = PublicFigures("t", start, end)
        for leaf in leaves:
            reference.add_leaf(leaf)
        figures = public_figures(timed_log, "t", start, end, len(leaves))
        assert canonical_json(figures) == canonical_json(reference.figures())


def test_missing_facts_are_filled_before_the_report(
    timed_log: Log, clock: Clock, db_url: str
) -> None:
    """Entries appended by a version that did not write facts (after 0023) are filled from
    their leaves when a report needs them."""
    build_world(timed_log, clock, seed=5, entries=200)
    expected = _expected_rows(timed_log)
    drop_append_only_triggers(db_url)
    raw_sql(db_url, "DELETE FROM log_facts WHERE seq % 3 = 1")
    assert len(_facts_rows(db_url)) < len(expected)
    start, end = half_bounds("2023-H2", ZONE)
    leaves = list(iter_leaves(timed_log, timed_log.size()))
    reference = PublicFigures("t", start, end)
    for leaf in leaves:
        reference.add_leaf(leaf)
    figures = public_figures(timed_log, "t", start, end, len(leaves))
    assert canonical_json(figures) == canonical_json(reference.figures())
    assert _facts_rows(db_url) == expected


# ---------------------------------------------------------------- the auditor's runs


def test_runs_of_subtrees_combine_into_the_trees_root() -> None:
    rng = random.Random(6962)
    for _ in range(300):
        size = rng.randrange(1, 200)
        hashes = [hashlib.sha256(b"%d" % i).digest() for i in range(size)]
        reference = Frontier()
        for h in hashes:
            reference.append(h)
        cuts = sorted({0, *rng.sample(range(size), min(size, rng.randrange(6)))})
        tree = Frontier()
        for start, end in zip(cuts, [*cuts[1:], size], strict=True):
            run = Frontier(size=start)  # a worker's, starting at its first leaf
            for h in hashes[start:end]:
                push(run, 0, h)
            for level, node in zip(run.levels, run.hashes, strict=True):
                push(tree, level, node)
            assert tree.size == end
        assert (tree.size, tree.levels, tree.root()) == (
            size,
            reference.levels,
            reference.root(),
        ), cuts


def test_a_bundles_leaves_are_read_in_runs(tmp_path: Path) -> None:
    rng = random.Random(1)
    leaves = [rng.randbytes(rng.randrange(1, 60)) for _ in range(500)]
    path = tmp_path / "leaves.txt"
    lines = [base64.b64encode(leaf) for leaf in leaves]
    lines[77] = b"not base64!"
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    source = FileLeaves(str(path), block=64)  # lines spread over many blocks
    cuts = [0, 1, 2, 63, 64, 77, 300, 499, 500]
    offsets = source.plan(cuts)
    read: list[tuple[int, bytes | None]] = []
    for start, end, offset, stop in zip(cuts, cuts[1:], offsets, offsets[1:], strict=False):
        read.extend(source.read(Run(start, end, True, offset, stop)))
    assert [index for index, _ in read] == list(range(500))
    assert [leaf for _, leaf in read] == [
        None if i == 77 else leaf for i, leaf in enumerate(leaves)
    ]
    with pytest.raises(AuditError, match="fewer"):
        source.plan([0, 501])


def test_the_auditor_recomputes_from_a_downloaded_bundle(
    app: Litestar,
    log: Log,
    url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The bundle ``timebank audit export`` wrote: the same verdicts as over HTTP, with runs of
    two leaves (so the tree is built from many workers' subtrees) in one and two processes."""
    reports = world(app, log)
    published = reports.publish(principal(app, "t-admin"), "2026-H2")
    log.append(deposit("after", member(1), 5))
    bundle = tmp_path / "bundle"
    export_bundle(url, bundle)
    monkeypatch.setattr("reports.recompute.RUN", 2)
    policy = Policy(log.signer.verifier)
    changed = json.loads(published.data)
    changed["public"]["minutes_by_kind"]["gift"] += 1
    for source in (BundleLog(bundle), LogClient(url)):
        for workers in (1, 2):
            good = verify_report(published.data, source, policy, workers=workers)
            assert good.ok, list(good.lines())
            assert good.entries == published.tree_size + 2
            bad = verify_report(canonical_json(changed), source, policy, workers=workers)
            assert [p.where for p in bad.problems] == ["public.minutes_by_kind.gift", "sha256"]
    # a leaf of the bundle changed: its root is no longer the signed one, and the figure that
    # moved is named
    lines = (bundle / "leaves.txt").read_bytes().split(b"\n")
    leaf = base64.b64decode(lines[2]).replace(b'"minutes":-15', b'"minutes":-16')
    leaf = leaf.replace(b'"minutes":15', b'"minutes":16')  # the gift g3, still balanced
    assert leaf != base64.b64decode(lines[2])
    lines[2] = base64.b64encode(leaf)
    (bundle / "leaves.txt").write_bytes(b"\n".join(lines))
    report = verify_report(published.data, BundleLog(bundle), policy, workers=2)
    assert [p.where for p in report.problems] == [
        "checkpoint",
        "served checkpoint",
        "public.minutes_by_kind.gift",
    ], list(report.lines())

    path = tmp_path / "report.json"
    path.write_bytes(published.data)
    key = log.verifier_key
    assert main(["audit", "report", str(path), "--bundle", str(bundle), "--key", key]) == 1
    assert "public.minutes_by_kind.gift: the document says 15, the log gives 16" in (
        capsys.readouterr().out
    )
    assert main(["audit", "report", str(path), "--key", key]) == 2
    assert "give --url URL or --bundle DIR" in capsys.readouterr().err

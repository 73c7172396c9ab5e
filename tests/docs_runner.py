"""Run the shell examples of the docs against a fresh demo and compare what they print.

The walk-throughs say "every command below was run"; this keeps it true. For each document it
takes a fresh demo seeded exactly as ``make run`` does (``timebank migrate``, ``timebank seed
--demo`` with the Makefile's ``DEMO_ENTRIES``; on SQLite seeded once per process and copied for
each document), starts the real ``timebank serve`` on a free port, and
runs the document's ``sh`` blocks in order in one ``bash`` session. A block followed by a
``text`` or ``json`` block (only blank lines between) must print what that block shows;
a block without one must print nothing. ``sh no-run`` blocks are shown, never run. The
documents of ``FEDERATION_DOCS`` run against the two-district demo (``make run-federation``)
instead.

Expected output may hold placeholders for what differs on every run (see ``PLACEHOLDERS``
and docs/README.md): ``<id>``, ``<hash>``, ``<key>``, ``<time>``, ``<date>``, ``<month>``, ``<n>``,
``<half>``, ``<code>``, ``<who>``, ``<ref>``, ``...`` (any text within a line) and a line of only
``...`` (any lines).
``json`` blocks are compared as JSON values (key order and layout ignored).

``python -m tests.docs_runner [DOC…]`` runs documents from the command line (``make
docs-check``); ``--update`` writes the actual output into mismatching blocks, keeping the
expected lines (and their placeholders) that still match, for a human to review.
"""

from __future__ import annotations

import argparse
import atexit
import difflib
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path

import sqlalchemy

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
DOCS = (
    "README.md",
    "docs/workflow.md",
    "docs/api.md",
    "docs/accounts.md",
    "docs/auditing.md",
    "docs/partners.md",
    "docs/statistics.md",
    "docs/federation.md",
    "docs/operations.md",
    "docs/idempotency.md",
)
# Written against the two-district demo (``make run-federation``) instead of ``make run``'s bank.
FEDERATION_DOCS = frozenset({"docs/federation.md"})
# Ports the docs use, served on free ports during a run (and written back in the output).
DOC_PORTS = (8000, 8001)
BLOCK_TIMEOUT = 120.0

# What a placeholder in expected output matches: each exactly one token of its kind.
PLACEHOLDERS: dict[str, str] = {
    "<id>": r"[0-9a-f]{16}(?:[0-9a-f]{16})?",  # object ids: 16 hex digits (device keys: 32)
    "<hash>": r"(?:[0-9a-f]{64}|[A-Za-z0-9+/]{43}=)",  # SHA-256, hex or base64
    "<key>": r"[A-Za-z0-9+/_=-]{16,}",  # tokens, passwords, keys, signatures
    "<time>": r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d)?",
    "<date>": r"\d{4}-\d\d-\d\d",
    "<month>": r"\d{4}-\d\d",  # a month (federation.md's settlements: last month, this one)
    "<n>": r"-?\d+",  # sequence numbers, sizes, counts
    "<half>": r"\d{4}-H[12]",  # a half year (the demo's published reports depend on the date)
    "<code>": r"\d{6}",  # TOTP and confirmation codes
    "<who>": r"p:[0-9a-f]{20}",  # who acted, as the public log names them (docs/privacy.md)
    "<ref>": r"[0-9a-f]{20}",  # a request or record, as the public log names it (formats.md)
}
ELLIPSES = ("...", "…")
_TOKEN = re.compile("|".join(re.escape(p) for p in (*PLACEHOLDERS, *ELLIPSES)))
_SENTINEL = "@@placeholder@@"


@dataclass(frozen=True)
class Block:
    """One ``sh`` block and the output block under it (if any)."""

    path: str
    line: int  # 1-based line of the opening fence
    code: str
    run: bool
    expected: str | None = None
    kind: str | None = None  # "text" or "json"
    expected_line: int = 0  # first line of the expected text
    expected_end: int = 0  # line of the closing fence


@dataclass
class Mismatch:
    block: Block
    actual: str
    diff: str

    def report(self) -> str:
        where = (
            f"the output differs from the {self.block.kind} block at line "
            f"{self.block.expected_line}"
            if self.block.kind
            else "it printed something, and no text or json block under it says what"
        )
        return (
            f"{self.block.path}:{self.block.line}: {where}\n"
            f"--- the block\n{self.block.code.rstrip()}\n"
            f"--- expected\n{(self.block.expected or '').rstrip()}\n"
            f"--- actual\n{self.actual.rstrip()}\n"
            f"--- diff (expected → actual)\n{self.diff}"
        )


@dataclass
class Result:
    path: str
    blocks: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)


_FENCE = re.compile(r"^(`{3,})\s*([^`]*)$")


def extract(markdown: str, path: str = "<doc>") -> list[Block]:
    """The ``sh`` blocks of a document, each with the ``text``/``json`` block right under it."""
    lines = markdown.split("\n")
    fences: list[tuple[int, int, str, list[str], str]] = []  # start, end, lang, flags, body
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        ticks, info = match.group(1), match.group(2).split()
        end = i + 1
        while end < len(lines) and lines[end].rstrip() != ticks:
            end += 1
        body = "\n".join(lines[i + 1 : end])
        fences.append((i, end, info[0] if info else "", info[1:], body + "\n" if body else ""))
        i = end + 1
    blocks: list[Block] = []
    for n, (start, end, lang, flags, body) in enumerate(fences):
        if lang != "sh":
            continue
        run = "no-run" not in flags
        following = fences[n + 1] if n + 1 < len(fences) else None
        if (
            following is not None
            and following[2] in ("text", "json")
            and all(not line.strip() for line in lines[end + 1 : following[0]])
        ):
            blocks.append(
                Block(
                    path,
                    start + 1,
                    body,
                    run,
                    following[4],
                    following[2],
                    following[0] + 2,
                    following[1] + 1,
                )
            )
        else:
            blocks.append(Block(path, start + 1, body, run))
    return blocks


@lru_cache(maxsize=4096)
def line_pattern(expected: str) -> re.Pattern[str]:
    """A regex for one expected line: literal text, placeholders as their patterns."""
    parts: list[str] = []
    position = 0
    for match in _TOKEN.finditer(expected):
        parts.append(re.escape(expected[position : match.start()]))
        token = match.group(0)
        parts.append(".*?" if token in ELLIPSES else PLACEHOLDERS[token])
        position = match.end()
    parts.append(re.escape(expected[position:]))
    return re.compile("".join(parts))


def _is_gap(line: str) -> bool:
    return line.strip() in ELLIPSES


def line_matches(expected: str, actual: str) -> bool:
    return line_pattern(expected.rstrip()).fullmatch(actual.rstrip()) is not None


def lines_match(expected: Sequence[str], actual: Sequence[str]) -> bool:
    """Whether the actual lines fit the expected ones (a line of ``...`` stands for any lines)."""

    @cache
    def fits(i: int, j: int) -> bool:
        if i == len(expected):
            return j == len(actual)
        if _is_gap(expected[i]):
            return any(fits(i + 1, k) for k in range(j, len(actual) + 1))
        return j < len(actual) and line_matches(expected[i], actual[j]) and fits(i + 1, j + 1)

    return fits(0, 0)


def _alignment(expected: Sequence[str], actual: Sequence[str]) -> dict[int, int]:
    """Pairs (actual line → expected line) of a longest common subsequence under matching."""
    rows, cols = len(expected), len(actual)
    best = [[0] * (cols + 1) for _ in range(rows + 1)]
    for i in range(rows - 1, -1, -1):
        for j in range(cols - 1, -1, -1):
            if not _is_gap(expected[i]) and line_matches(expected[i], actual[j]):
                best[i][j] = best[i + 1][j + 1] + 1
            else:
                best[i][j] = max(best[i + 1][j], best[i][j + 1])
    pairs: dict[int, int] = {}
    i = j = 0
    while i < rows and j < cols:
        if not _is_gap(expected[i]) and line_matches(expected[i], actual[j]):
            pairs[j] = i
            i, j = i + 1, j + 1
        elif best[i + 1][j] >= best[i][j + 1]:
            i += 1
        else:
            j += 1
    return pairs


def readable_diff(expected: Sequence[str], actual: Sequence[str]) -> str:
    """A unified diff in which lines that match their placeholders count as equal."""
    pairs = _alignment(expected, actual)
    shown = [expected[pairs[j]] if j in pairs else line for j, line in enumerate(actual)]
    diff = difflib.unified_diff(list(expected), shown, "expected", "actual", n=2, lineterm="")
    return "\n".join(diff)


# ``--update`` writes new lines with these put in: a suggestion for a human to review.
_SUGGEST = (
    (re.compile(PLACEHOLDERS["<time>"]), "<time>"),
    (re.compile(PLACEHOLDERS["<who>"]), "<who>"),
    (re.compile(r"\b[0-9a-f]{64}\b"), "<hash>"),
    (re.compile(r"\b(?=[0-9a-f]*[a-f])[0-9a-f]{20}\b"), "<ref>"),
    (re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{43}="), "<hash>"),
    (re.compile(r"\btb[soke]_[A-Za-z0-9_-]{20,}"), "<key>"),
    (re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{60,}={0,2}"), "<key>"),
    (re.compile(r"\b[0-9a-f]{32}\b|\b(?=[0-9a-f]*[a-f])[0-9a-f]{16}\b"), "<id>"),
    (re.compile(r'("(?:\w+_)?seq"|"tree_size"|"reverses"|"index")(: ?)-?\d+'), r"\1\2<n>"),
    (re.compile(r'("code"|"code_now")(: ?)"\d{6}"'), r'\1\2"<code>"'),
    (re.compile(r"/receipts/\d+"), "/receipts/<n>"),
)


def suggest(line: str) -> str:
    for pattern, placeholder in _SUGGEST:
        line = pattern.sub(placeholder, line)
    return line


def merged(expected: Sequence[str], actual: Sequence[str]) -> list[str]:
    """``--update``: the actual lines, keeping the expected line wherever it still matches."""
    pairs = _alignment(expected, actual)
    return [expected[pairs[j]] if j in pairs else suggest(line) for j, line in enumerate(actual)]


def _json_values(text: str) -> list[object]:
    decoder = json.JSONDecoder()
    values: list[object] = []
    position = 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position == len(text):
            return values
        value, position = decoder.raw_decode(text, position)
        values.append(value)


_BARE = re.compile(r'("(?:[^"\\]|\\.)*")|(<(?:id|hash|key|time|date|n|code)>)')


def _expected_json(text: str) -> list[object]:
    """Parse expected JSON in which placeholders may stand bare, where a number would be."""

    def quote(match: re.Match[str]) -> str:
        if match.group(1):
            return match.group(1)
        return json.dumps(_SENTINEL + match.group(2))

    return _json_values(_BARE.sub(quote, text))


def _render(values: list[object]) -> list[str]:
    text = "\n".join(json.dumps(v, indent=2, sort_keys=True, ensure_ascii=False) for v in values)
    return re.sub(rf'"{re.escape(_SENTINEL)}(<\w+>)"', r"\1", text).split("\n")


def compare(block: Block, actual: str) -> Mismatch | None:
    """None if ``actual`` is what the block's expected output says, else the mismatch."""
    actual_lines = _lines(actual)
    if block.kind == "json":
        assert block.expected is not None
        expected_lines = _render(_expected_json(block.expected))
        try:
            shown = _render(_json_values(actual))
        except ValueError:
            shown = actual_lines
        if lines_match(expected_lines, shown):
            return None
        return Mismatch(block, actual, readable_diff(expected_lines, shown))
    expected_lines = _lines(block.expected or "")
    if lines_match(expected_lines, actual_lines):
        return None
    return Mismatch(block, actual, readable_diff(expected_lines, actual_lines))


def _lines(text: str) -> list[str]:
    stripped = "\n".join(line.rstrip() for line in text.rstrip().split("\n"))
    return stripped.split("\n") if stripped.strip() else []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def demo_entries() -> int:
    """The Makefile's DEMO_ENTRIES: the runner seeds exactly what ``make run`` seeds."""
    match = re.search(r"^DEMO_ENTRIES \?= (\d+)$", (ROOT / "Makefile").read_text(), re.M)
    assert match, "Makefile has no DEMO_ENTRIES"
    return int(match.group(1))


@dataclass
class Demo:
    """A fresh demo in a scratch directory that looks like a checkout after ``make run``."""

    home: Path  # the scratch "repository": .venv links to the real one, ./var holds the data
    ports: dict[int, int]
    env: dict[str, str]


def _clean_env(home: Path) -> dict[str, str]:
    keep = ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR", "SYSTEMROOT")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(HOME=str(home / "home"), LANG="C.UTF-8", TERM="dumb", PYTHONHASHSEED="0")
    env["TIMEBANK_AUDIT_SEAL_SECONDS"] = "2"  # seal the audit trail within seconds, not a minute
    return env


@contextmanager
def fresh_demo(database_url: str | None = None, migrated: bool = False) -> Iterator[Demo]:
    """A demo migrated, seeded and served as ``make run`` does, on free ports; stopped after.
    On SQLite, ``./var`` is a copy of ``_seeded_var``; on ``database_url`` (an empty database),
    seeded there, the server's and every block's ``TIMEBANK_DATABASE_URL``; ``migrated``: its
    owner migrated it already."""
    scratch, env = _scratch()
    ports = {port: free_port() for port in DOC_PORTS}
    timebank = str(VENV / "bin" / "timebank")
    try:
        if database_url is None:
            shutil.copytree(_seeded_var(), scratch / "var")
        else:
            env["TIMEBANK_DATABASE_URL"] = database_url
            _seed(scratch, env, migrated)
        entries, events = _counts(database_url or f"sqlite:///{scratch / 'var' / 'timebank.db'}")
        serve = [timebank, "serve", "--host", "127.0.0.1", "--port", str(ports[8000])]
        with _serving(serve, scratch, env, [ports[8000]], 60) as deadline:
            if events:  # the seed's audit event: wait for its seal, so that every run starts alike
                _wait_for_size(f"http://127.0.0.1:{ports[8000]}", entries + 1, deadline)
            yield Demo(scratch, ports, env)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _seed(scratch: Path, env: dict[str, str], migrated: bool = False) -> None:
    """``make run``'s ``timebank migrate`` (unless ``migrated``) and ``timebank seed``."""
    seed = ["seed", "--demo", "--if-empty", "--entries", str(demo_entries())]
    for args in [seed] if migrated else [["migrate"], seed]:
        done = subprocess.run(
            [str(VENV / "bin" / "timebank"), *args],
            cwd=scratch,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            raise RuntimeError(f"timebank {' '.join(args)} failed:\n{done.stdout}{done.stderr}")


@cache
def _seeded_var() -> Path:
    """``./var`` of a demo migrated and seeded on SQLite as ``make run`` does, once per process
    (removed at its exit): each document's demo starts from a copy, the same as seeding it
    again (the seed's data are reproducible; its keys are new to each process, and what it does
    "this month" is a few minutes older) at a fraction of the cost."""
    scratch, env = _scratch()
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    _seed(scratch, env)
    return scratch / "var"


@contextmanager
def fresh_federation() -> Iterator[Demo]:
    """The two-district demo as ``make run-federation`` starts it (``python -m
    demo.federation``: 鼓楼 on the port the docs call 8000, 秦淮 on 8001, each the other's peer
    and witness), in a fresh scratch directory; both stopped after."""
    scratch, env = _scratch()
    first = free_port_pair()
    ports = {8000: first, 8001: first + 1}
    run = [str(VENV / "bin" / "python"), "-m", "demo.federation", "run", "--root"]
    run += ["var/federation", "--port", str(first), "--entries", str(demo_entries())]
    env["PYTHONPATH"] = str(ROOT)  # demo/ is the repository's, beside the installed packages
    # No retry worker: federation.md's `peers transfers retry` delivers its held transfer, not a
    # worker round that a slow run would let come first.
    env["TIMEBANK_TRANSFER_RETRY_SECONDS"] = "0"
    try:
        with _serving(run, scratch, env, list(ports.values()), 300) as deadline:
            # As a few seconds after ``make run-federation``: each log cosigned by the other.
            for port, witness in ((first, "qinhuai"), (first + 1, "gulou")):
                _wait_for_cosignature(f"http://127.0.0.1:{port}", witness, deadline)
            yield Demo(scratch, ports, env)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _scratch() -> tuple[Path, dict[str, str]]:
    """A scratch "checkout" (``.venv`` linked to the real one, an empty home) and the clean
    environment its commands run with."""
    scratch = Path(tempfile.mkdtemp(prefix="timebank-docs-"))
    (scratch / "home").mkdir()
    (scratch / ".venv").symlink_to(VENV)
    return scratch, _clean_env(scratch)


def free_port_pair() -> int:
    """A free port whose next port is free too (the two-district demo serves on both)."""
    while True:
        port = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port


@contextmanager
def _serving(
    argv: list[str], cwd: Path, env: dict[str, str], ports: list[int], seconds: float
) -> Iterator[float]:
    """Run ``argv`` (a server) until every port answers ``/healthz``, within ``seconds``; yield
    that deadline; stop it with Ctrl-C's signal after (killed if it lingers)."""
    log_path = cwd / "server.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + seconds
        for port in ports:
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                        break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(log_path.read_text()) from None
                    time.sleep(0.2)
        yield deadline
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def _counts(database_url: str) -> tuple[int, int]:
    """The seeded demo's log entries and audit events."""
    engine = sqlalchemy.create_engine(database_url)
    try:
        with engine.connect() as conn:
            entries = conn.execute(sqlalchemy.text("SELECT count(*) FROM log_entries")).scalar_one()
            events = conn.execute(sqlalchemy.text("SELECT count(*) FROM audit_events")).scalar_one()
    finally:
        engine.dispose()
    return int(entries), int(events)


def _wait_for_size(url: str, size: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{url}/healthz", timeout=2) as answer:
            if json.load(answer)["tree_size"] >= size:
                return
        time.sleep(0.2)
    raise RuntimeError(f"the demo's log did not reach {size} entries (the seal of the seed)")


def _wait_for_cosignature(url: str, witness: str, deadline: float) -> None:
    line = f"\n\u2014 {witness}.timebank.local/demo/witness "
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{url}/v1/log/checkpoint", timeout=2) as answer:
            if line in answer.read().decode():
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url}'s checkpoint was not cosigned by {witness} in time")


class Shell:
    """One bash session: variables, functions and the directory carry from block to block."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="timebank-blocks-"))
        self.process = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.count = 0

    def run(self, code: str, timeout: float = BLOCK_TIMEOUT) -> str:
        """Run ``code`` as if typed; returns what it printed (stdout and stderr)."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.count += 1
        script = self.dir / f"block-{self.count}.sh"
        script.write_text(code)
        marker = f"--- end of block {uuid.uuid4().hex} ---"
        self.process.stdin.write(
            f"source {script} </dev/null\nprintf '\\n%s\\n' '{marker}'\n".encode()
        )
        self.process.stdin.flush()
        wanted = f"\n{marker}\n".encode()
        received = b""
        deadline = time.monotonic() + timeout
        fd = self.process.stdout.fileno()
        while wanted not in received:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"the block did not finish in {timeout:.0f} s:\n{code}")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise RuntimeError(f"the shell ended during the block:\n{code}\n{received!r}")
                received += chunk
        return received[: received.index(wanted)].decode(errors="replace")

    def close(self) -> None:
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


def _to_ports(text: str, ports: dict[int, int]) -> str:
    for doc_port, port in ports.items():
        text = re.sub(rf"(127\.0\.0\.1|localhost):{doc_port}\b", rf"\g<1>:{port}", text)
    return text


def _from_ports(text: str, ports: dict[int, int]) -> str:
    for doc_port, port in ports.items():
        text = re.sub(rf"(127\.0\.0\.1|localhost):{port}\b", rf"\g<1>:{doc_port}", text)
    return text


def run_blocks(
    blocks: Sequence[Block], path: str, demo: Demo | None = None
) -> tuple[Result, list[str]]:
    """Run the blocks in one shell against a demo (a fresh one unless given); the result and
    every block's output."""
    if demo is None:
        with demo_for(path) as fresh:
            return run_blocks(blocks, path, fresh)
    result = Result(path)
    outputs: list[str] = []
    shell = Shell(demo.home, demo.env)
    try:
        for block in blocks:
            if not block.run:
                outputs.append("")
                continue
            actual = _from_ports(shell.run(_to_ports(block.code, demo.ports)), demo.ports)
            actual = actual.replace(str(demo.home / "home"), "~")
            outputs.append(actual)
            result.blocks += 1
            mismatch = compare(block, actual)
            if mismatch is not None:
                result.mismatches.append(mismatch)
    finally:
        shell.close()
    return result, outputs


def run_document(path: str, database_url: str | None = None, migrated: bool = False) -> Result:
    """``path``'s blocks against a fresh demo (on ``database_url``: see ``fresh_demo``)."""
    blocks = extract((ROOT / path).read_text(), path)
    with demo_for(path, database_url, migrated) as demo:
        return run_blocks(blocks, path, demo)[0]


def demo_for(
    path: str, database_url: str | None = None, migrated: bool = False
) -> AbstractContextManager[Demo]:
    """The demo ``path``'s examples are written against (see ``FEDERATION_DOCS``)."""
    if path in FEDERATION_DOCS:
        assert database_url is None, "the two-district demo keeps each bank in its own SQLite"
        return fresh_federation()
    return fresh_demo(database_url, migrated)


def update_document(path: str) -> Result:
    """Run a document and write the actual output into the blocks that do not match."""
    text = (ROOT / path).read_text()
    blocks = extract(text, path)
    result, outputs = run_blocks(blocks, path)
    lines = text.split("\n")
    failing = {id(m.block) for m in result.mismatches}
    for block, actual in sorted(zip(blocks, outputs, strict=True), key=lambda pair: -pair[0].line):
        if id(block) not in failing or block.expected is None:
            continue
        new = merged(_lines(block.expected), _lines(actual))  # as printed, in its layout
        lines[block.expected_line - 1 : block.expected_end - 1] = new
    (ROOT / path).write_text("\n".join(lines))
    return result


REQUIRED_TOOLS = ("bash", "curl", "jq", "openssl", "base64", "date", "xxd", "sha256sum")


def missing_tools() -> list[str]:
    """The commands the docs use that this machine lacks."""
    return [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]


def existing_docs() -> list[str]:
    return [doc for doc in DOCS if (ROOT / doc).exists()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("docs", nargs="*", help="documents (default: all that exist)")
    parser.add_argument("--update", action="store_true", help="write actual output into them")
    args = parser.parse_args(argv)
    failed = 0
    for path in args.docs or existing_docs():
        result = update_document(path) if args.update else run_document(path)
        for mismatch in result.mismatches:
            print(mismatch.report(), end="\n\n")
        state = f"{len(result.mismatches)} mismatches" if result.mismatches else "OK"
        print(f"{path}: {result.blocks} blocks run, {state}")
        failed += bool(result.mismatches)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

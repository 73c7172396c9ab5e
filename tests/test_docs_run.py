"""The docs' shell examples run against a fresh demo and print what the docs show.

One test per document (tests/docs_runner.py does the work; ``make docs-check`` runs it alone),
and tests of the runner itself: it reports a changed output with the block and both outputs,
and its placeholders match what they stand for and nothing more.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests import docs_runner
from tests.docs_runner import Block, Demo, compare, extract, line_matches, lines_match, run_blocks


@pytest.fixture(scope="module")
def tools() -> None:
    missing = docs_runner.missing_tools()
    if missing:
        message = f"the docs' examples need {', '.join(missing)} (apt-get install curl jq openssl)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.mark.parametrize("path", docs_runner.existing_docs())
def test_the_docs_examples_print_what_the_docs_show(path: str, tools: None) -> None:
    result = docs_runner.run_document(path)
    assert result.blocks > 0, f"{path} has no runnable sh blocks"
    reports = "\n\n".join(m.report() for m in result.mismatches)
    assert not result.mismatches, (
        f"{len(result.mismatches)} of {result.blocks} blocks of {path} print something else "
        f"than the doc shows (fix the doc, or the product):\n\n{reports}"
    )


SYNTHETIC = """# A document

Prose.

```sh
GREETING=hello
echo "$GREETING world"
```
```text
hello world
```

```sh no-run
make run
```

```sh
echo "$GREETING again"; echo "id 0123456789abcdef at 2026-11-25T05:53:46.356643Z"
```

```text
hello again
id <id> at <time>
```

```sh
printf '{"b": 2, "a": [1, "x"]}\\n'
```
```json
{"a": [1, "x"], "b": <n>}
```

```sh
true
```
"""


def local_demo(tmp_path: Path) -> Demo:
    """A stand-in 'demo' for blocks that need no server: a scratch directory and environment."""
    (tmp_path / "home").mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path / "home"), "LANG": "C.UTF-8"}
    return Demo(tmp_path, {}, env)


def test_blocks_run_in_order_in_one_shell_and_pass_when_the_output_fits(tmp_path: Path) -> None:
    blocks = extract(SYNTHETIC, "synthetic.md")
    assert [(b.line, b.run, b.kind) for b in blocks] == [
        (5, True, "text"),
        (13, False, None),
        (17, True, "text"),
        (26, True, "json"),
        (33, True, None),
    ]
    result, outputs = run_blocks(blocks, "synthetic.md", local_demo(tmp_path))
    assert result.blocks == 4 and result.mismatches == []
    assert outputs[0] == "hello world\n"  # the variable of the first block reached the third
    assert outputs[2].startswith("hello again\n")


def test_a_changed_output_fails_with_the_block_and_both_outputs(tmp_path: Path) -> None:
    changed = SYNTHETIC.replace("hello world\n```", "hello there\n```").replace(
        '"b": <n>', '"b": 3'
    )
    result, _ = run_blocks(extract(changed, "synthetic.md"), "synthetic.md", local_demo(tmp_path))
    assert len(result.mismatches) == 2
    first, second = (m.report() for m in result.mismatches)
    assert "synthetic.md:5:" in first and 'echo "$GREETING world"' in first
    assert "--- expected\nhello there\n" in first and "--- actual\nhello world\n" in first
    assert "-hello there\n+hello world" in first  # the diff
    assert "synthetic.md:26:" in second and '-  "b": 3' in second and '+  "b": 2' in second


def test_a_block_without_an_output_block_must_print_nothing(tmp_path: Path) -> None:
    noisy = SYNTHETIC.replace("```sh\ntrue\n```", "```sh\necho surprise\n```")
    result, _ = run_blocks(extract(noisy, "synthetic.md"), "synthetic.md", local_demo(tmp_path))
    assert [m.block.line for m in result.mismatches] == [33]
    assert "+surprise" in result.mismatches[0].diff


@pytest.mark.parametrize(
    ("expected", "actual", "fits"),
    [
        ("<id>", "0123456789abcdef", True),
        ("<id>", "0123456789abcdef0123456789abcdef", True),
        ("<id>", "0123456789abcde", False),
        ("<id>", "0123456789abcdef0", False),
        ("<id>", "0123456789ABCDEF", False),
        ("<id>", "admin", False),
        ("<n>", "2313", True),
        ("<n>", "-90", True),
        ("<n>", "12a", False),
        ("<n>", "", False),
        ("<code>", "035711", True),
        ("<code>", "35711", False),
        ("<time>", "2026-11-25T05:53:46.356643Z", True),
        ("<time>", "2026-11-25 03:23:00+00:00", True),
        ("<time>", "2026-11-25", False),
        ("<date>", "2026-11-25", True),
        ("<month>", "2026-11", True),
        ("<month>", "2026-11-25", False),
        ("<month>", "26-11", False),
        ("<hash>", "a" * 64, True),
        ("<hash>", "kL8UHhEJCEmFNCSAAPO1a/s5cuA9e929svyyp80W/Ko=", True),
        ("<hash>", "a" * 63, False),
        ("<key>", "tbs_CV3M8nUSdGs63aFVGYkHwQWVYACnpJi0nAvWZnDKFd4", True),
        ("<key>", "short", False),
        ("<key>", "two words here and more", False),
        ('"id": "<id>"', '"id": "0123456789abcdef"', True),
        ('"id": "<id>"', '"id": null', False),
        ("seq <n>: ...", "seq 12: anything at all", True),
        ("seq <n>: ...", "seq 12 anything", False),
        ("a.b (c) [d]*", "a.b (c) [d]*", True),  # regex characters are literal
        ("a.b", "axb", False),
    ],
)
def test_placeholders_match_what_they_stand_for_and_no_more(
    expected: str, actual: str, fits: bool
) -> None:
    assert line_matches(expected, actual) is fits


def test_a_line_of_dots_stands_for_any_lines_and_json_ignores_key_order() -> None:
    assert lines_match(["first", "...", "last"], ["first", "last"])
    assert lines_match(["first", "...", "last"], ["first", "a", "b", "last"])
    assert not lines_match(["first", "...", "last"], ["first", "a", "b"])
    assert not lines_match(["first"], ["first", "second"])
    block = Block("x.md", 1, "", True, '{"a": 1, "b": ["<id>"]}\n', "json", 3)
    assert compare(block, '{"b":["0123456789abcdef"],"a":1}') is None
    assert compare(block, '{"b":["0123456789abcdef"],"a":2}') is not None
    assert compare(block, '{"b":["0123456789abcdef"]}') is not None  # a key missing
    assert compare(block, "not json") is not None

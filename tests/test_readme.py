"""The README's examples run as written: a newcomer copies them first."""

from __future__ import annotations

import itertools
import re
import shlex
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
DEFAULT_URL = "http://127.0.0.1:8000"


def python_block(heading: str) -> str:
    """The first ```python block under ``heading``."""
    text = README.read_text()
    section = text[text.index(f"\n{heading}\n") :]
    found = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert found is not None, f"no python block under {heading}"
    return found.group(1)


def test_the_python_client_example_runs_as_written(live_url: str) -> None:
    code = python_block("## Python client")
    assert DEFAULT_URL in code
    done = subprocess.run(
        [sys.executable, "-c", code.replace(DEFAULT_URL, live_url)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[3] == "['model-b', 'model-a']"
    assert lines[1].startswith("{'accuracy': ")
    assert float(lines[-1]) > 0


def fenced_blocks() -> list[tuple[str, str]]:
    """The README's fenced code blocks, as (language, text), in order."""
    return re.findall(r"^```(\w*)\n(.*?)^```$", README.read_text(), re.DOTALL | re.MULTILINE)


def curl_examples() -> list[tuple[str, bytes, bytes]]:
    """(path, body, output) of each ``curl`` example whose output is given on one line."""
    blocks = fenced_blocks()
    examples = []
    for (language, text), (next_language, output) in itertools.pairwise(blocks):
        if language != "sh" or not text.startswith(f"curl -s {DEFAULT_URL}/"):
            continue
        words = shlex.split(text)
        if next_language == "json" and output.count("\n") == 1:
            path = words[2].removeprefix(DEFAULT_URL)
            body = words[words.index("-d") + 1].encode()
            examples.append((path, body, output.strip().encode()))
    return examples


def test_the_readme_has_curl_examples() -> None:
    assert [path for path, _, _ in curl_examples()] == ["/score", "/score", "/score"]


@pytest.mark.anyio
@pytest.mark.parametrize(("path", "body", "output"), curl_examples())
async def test_each_curl_example_answers_as_written_byte_for_byte(
    client: httpx.AsyncClient, path: str, body: bytes, output: bytes
) -> None:
    response = await client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert response.content == output

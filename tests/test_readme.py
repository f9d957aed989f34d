"""The README's examples run as written: a newcomer copies them first."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

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

"""The TypeScript example (examples/typescript): a client generated from the running service's
own /openapi.json by openapi-typescript, compiled by tsc in strict mode, run by node against a
real server; its numbers are the Python client's. Skipped only where node is missing (CI
installs it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import running_server
from tests.examples import check_example_output

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "typescript"
NPM = shutil.which("npm")
pytestmark = pytest.mark.skipif(
    NPM is None and not os.environ.get("CI"), reason="node and npm are not installed"
)


def npm(folder: Path, *argv: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [NPM or "npm", *argv],
        cwd=folder,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_a_generated_typescript_client_compiles_strictly_and_scores(tmp_path: Path) -> None:
    folder = tmp_path / "typescript"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("node_modules", "dist"))
    (folder / "src" / "schema.d.ts").unlink(missing_ok=True)
    npm(folder, "ci", "--no-audit", "--no-fund")
    with running_server({"FAIRLOSS_API_KEYS": "sekrit"}) as server:
        # the schema needs no key: code is generated before anyone holds one
        npm(folder, "run", "generate", env={"FAIRLOSS_URL": server.url})
        npm(folder, "run", "build")
        done = subprocess.run(
            ["node", "dist/main.js", server.url],
            cwd=folder,
            capture_output=True,
            text=True,
            env={**os.environ, "FAIRLOSS_API_KEY": "sekrit"},
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    said = json.loads(done.stdout)
    check_example_output(said)
    # a misspelt field in a body declared as its schema's type does not compile
    (folder / "src" / "typo.ts").write_text(
        'import type { components } from "./schema.js";\n'
        'export const body: components["schemas"]["ScoreRequest"] = '
        "{ logits: [[1, 0]], labels: [0], sample_wieght: [1] };\n"
    )
    typo = subprocess.run(
        [NPM or "npm", "run", "build"], cwd=folder, capture_output=True, text=True, check=False
    )
    assert typo.returncode != 0
    assert "sample_wieght" in typo.stdout + typo.stderr

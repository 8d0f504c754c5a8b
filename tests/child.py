"""Run Python in a child process (tests/ on its path) and read the JSON it prints last.

OpenVINO runs only in children of the test process: once it has run in a process, forking that
process is unsafe (the test process crashed later, at a child's exit), and the suite forks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent


def run_child(code: str, timeout: float = 120, **env: str) -> Any:
    """Run ``code`` with ``env`` added to the environment; the JSON on its last line of output."""
    prelude = f"import sys; sys.path.insert(0, {str(TESTS)!r})\n"
    done = subprocess.run(
        [sys.executable, "-c", prelude + code],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **env},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])

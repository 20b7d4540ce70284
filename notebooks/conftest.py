"""nbval over the runbook notebooks, against the twin.

The notebooks run as an operator opening them would: their default parameters (``target="twin"``,
``apply=False``: every plan is shown, nothing is applied), against a fresh twin in its "before"
state that the first notebook starts (``runbook.open`` starts one when none is up) in a temporary
state dir. Their stored outputs are the reference (``python -m falkit.runbook.nbbuild --execute``);
volatile values are normalised by ``notebooks/sanitize.cfg``. The twin is stopped at the end.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_STATE = tempfile.mkdtemp(prefix="falkit-nbval-")
# kernels started by nbval inherit this environment
os.environ["FALKIT_STATE_DIR"] = _STATE
os.environ.pop("FALKIT_RUN_DIR", None)


def pytest_sessionfinish(session, exitstatus):  # noqa: ARG001 - pytest hook signature
    from falkit.twin import supervisor

    supervisor.down(Path(_STATE) / "twin")

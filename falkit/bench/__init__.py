"""Storage benchmarks: kbench-style fio jobs, the fio JSON parser, the twin's performance model.

- ``falkit.bench.fio``: job definitions, job files, ``parse_fio_json``, the fio Kubernetes Job.
- ``falkit.bench.model``: the documented model of Mayastor / Longhorn / local-path on The Fal,
  its physical ceilings, the comparison with the seed's claims, modelled fio JSON.
- ``falkit.bench.local``: ``falkit bench --local`` (real fio on this machine).
- ``falkit.bench.charts``: plotly figures.

Numbers from the model are always labelled ``modelled``; numbers from fio ``measured``.
"""

from falkit.bench.fio import (
    DEFAULT_JOBS,
    JOBS,
    FioError,
    FioJob,
    fio_command,
    jobfile,
    k8s_job_manifest,
    parse_fio_json,
    profile_settings,
    validate_job_manifest,
)
from falkit.bench.model import (
    SEED_CLAIMS,
    Device,
    ModelEnv,
    NetworkPath,
    Result,
    ceilings,
    compare_with_claims,
    fio_json_from_model,
    predict,
    the_fal,
)

__all__ = [
    "DEFAULT_JOBS",
    "JOBS",
    "SEED_CLAIMS",
    "Device",
    "FioError",
    "FioJob",
    "ModelEnv",
    "NetworkPath",
    "Result",
    "ceilings",
    "compare_with_claims",
    "fio_command",
    "fio_json_from_model",
    "jobfile",
    "k8s_job_manifest",
    "parse_fio_json",
    "predict",
    "profile_settings",
    "the_fal",
    "validate_job_manifest",
]

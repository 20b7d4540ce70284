"""A notebook's parameters and options: checked once, before anything connects, then frozen.

- The known options are :data:`BASE_OPTIONS` plus those each step declares as a class attribute
  ``options = {"name": (type, default)}`` (:data:`falkit.steps.registry.STEPS` and steps added
  there); two steps may declare the same option only with the same type.
- Unknown or ill-typed options -> :class:`~falkit.model.errors.ParameterError` listing every problem and
  the known options (papermill itself only warns). ``falkit run`` checks its ``--set`` options with
  the same :func:`validate_options`.
- :func:`step_options` turns the checked options into the frozen
  :class:`~falkit.steps.base.StepOptions` every step method receives.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..model.errors import ParameterError
from ..steps.base import StepOptions
from ..steps.registry import steps

BASE_OPTIONS: dict[str, tuple[type, Any]] = {
    "allow_disruptive": (bool, False),  # MAC/bridge changes, reboots
    "allow_destructive": (bool, False),  # deleting VMs/disks/volumes, shrinking
    "wait_timeout_s": (float, 600.0),  # how long a step may take to converge after apply
    "time_factor": (float, 0.0),  # the twin's clock when connect() starts it (0: tasks finish at once)
}
TARGETS = ("twin", "live")


def step_option_decls() -> dict[str, tuple[type, Any, str]]:
    """Options steps declare: ``{name: (type, default, step)}`` from each step class's ``options``."""
    out: dict[str, tuple[type, Any, str]] = {}
    for name, cls in sorted(steps().items()):
        for opt, decl in (getattr(cls, "options", None) or {}).items():
            typ, default = decl[0], decl[1]
            if opt in BASE_OPTIONS or (opt in out and out[opt][0] is not typ):
                raise ParameterError(f"step {name!r} declares option {opt!r} that clashes with another declaration")
            out.setdefault(opt, (typ, default, name))
    return out


def known_options() -> dict[str, tuple[type, Any]]:
    """Every option a notebook accepts, with its type and default."""
    out = dict(BASE_OPTIONS)
    out.update({k: (t, d) for k, (t, d, _s) in step_option_decls().items()})
    return out


def _check_type(name: str, value: Any, typ: type) -> Any:
    if typ is bool:
        if not isinstance(value, bool):
            raise ParameterError(f"option {name!r} must be true or false, got {type(value).__name__} {value!r}")
        return value
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ParameterError(f"option {name!r} must be a number, got {type(value).__name__} {value!r}")
        return float(value)
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParameterError(f"option {name!r} must be an integer, got {type(value).__name__} {value!r}")
        return value
    if not isinstance(value, typ):
        raise ParameterError(f"option {name!r} must be {typ.__name__}, got {type(value).__name__} {value!r}")
    return value


def validate_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """All options with defaults filled in; ``ParameterError`` lists every unknown/ill-typed one."""
    known = known_options()
    unknown = sorted(set(options) - set(known))
    problems = [f"unknown option {k!r}" for k in unknown]
    out = {k: d for k, (_t, d) in known.items()}
    for k, v in options.items():
        if k in known:
            try:
                out[k] = _check_type(k, v, known[k][0])
            except ParameterError as exc:
                problems.append(str(exc))
    if problems:
        raise ParameterError("invalid notebook parameters:\n  " + "\n  ".join(problems)
                             + f"\n  known options: {', '.join(sorted(known))}")
    if out["wait_timeout_s"] <= 0:
        raise ParameterError("option 'wait_timeout_s' must be positive")
    return out


def validate_parameters(params: Any, target: Any, apply: Any, options: Mapping[str, Any]) -> dict[str, Any]:
    """The notebook parameters (``params``, ``target``, ``apply`` and options), checked together."""
    problems = []
    if not isinstance(params, str | os.PathLike):
        problems.append(f"params must be a path to a lab YAML file, got {type(params).__name__} {params!r}")
    if target not in TARGETS:
        problems.append(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
    if not isinstance(apply, bool):
        problems.append(f"apply must be true or false, got {type(apply).__name__} {apply!r}")
    if problems:
        raise ParameterError("invalid notebook parameters:\n  " + "\n  ".join(problems))
    return {"params": params, "target": target, "apply": apply, "options": validate_options(options)}


def step_options(apply: bool, options: Mapping[str, Any]) -> StepOptions:
    """The frozen options every step method receives, from :func:`validate_options`' result."""
    return StepOptions(apply=apply, allow_disruptive=options["allow_disruptive"],
                       allow_destructive=options["allow_destructive"], wait_timeout_s=options["wait_timeout_s"],
                       extra={k: v for k, v in options.items() if k not in BASE_OPTIONS})


def changed_options(options: Mapping[str, Any]) -> str:
    """``name=value, …`` of the options that differ from their defaults (``defaults`` when none)."""
    known = known_options()
    return ", ".join(f"{k}={v}" for k, v in options.items() if known[k][1] != v) or "defaults"


def resolve_params(params: str | os.PathLike) -> Path:
    """``params`` as an absolute path (relative ones against the current directory)."""
    path = Path(params).expanduser()
    return path if path.is_absolute() else (Path.cwd() / path).resolve()


def missing_params_message(params: str | os.PathLike, path: Path) -> str:
    """Why ``params`` names no file, and — when it is the notebooks' ``../parameters/…`` default run
    from the repository root (``papermill notebooks/NN.ipynb …`` without ``--cwd``) — what to run."""
    text = f"params: no such lab file {path} (relative paths are resolved against {Path.cwd()})"
    rel = Path(params).expanduser()
    nb_dir = Path.cwd() / "notebooks"
    if not rel.is_absolute() and nb_dir.is_dir() and (nb_dir / rel).resolve().is_file():
        text += (f". The notebooks' {params!r} is relative to the notebooks/ directory: run papermill there, "
                 f"e.g. `papermill --cwd notebooks notebooks/00-preflight.ipynb out.ipynb`, or pass "
                 f"`-p params {os.path.relpath(nb_dir / rel)}` — or use `falkit run`")
    return text

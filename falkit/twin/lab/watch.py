"""Change sources outside the Kubernetes store, turned into ``ctx.notify()`` (issue 17).

The lab's controllers have no fixed tick: they wake on a store change, on ``ctx.notify()`` and at
their own deadlines (:class:`~falkit.twin.lab.context.LabContext`). Two things change without the
store seeing it; this controller watches them and notifies:

- **the twin's Proxmox** (VMs started/stopped/re-created, configs, bridges): the pve process
  answers a long poll ``GET /twin/changes?since=N`` (``falkit.twin.pve_process``, authenticated
  with the lab's API token like every request) as soon as a write request, a task or a PVE-time
  pause finished. On an answer with a new ``seq`` the :class:`~.pvereader.PveReader` cache is
  dropped and every controller makes a pass. Nothing is read while nothing changes.
- **Git** (what falkit pushed to the repositories Argo CD Applications read: :data:`WATCHED`, which
  the twin's Argo CD (:mod:`.argocd`) fills as it resolves revisions, and which it watches with
  :func:`watch_git` beside its own loop):
  Git has no push notification to a local bare repository the twin could receive, so the refs are
  ``stat``-ed every ``GIT_POLL_S`` seconds (no ``git`` process, a few system calls) and a change
  notifies — as Argo CD's webhook-triggered refresh would (argo-cd docs "Git Webhook
  Configuration"; without a webhook Argo CD polls every ``timeout.reconciliation``, 180 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import ssl
from pathlib import Path

import aiohttp

from .context import LabContext

log = logging.getLogger("falkit.twin.lab")

GIT_POLL_S = 0.5
LONG_POLL_S = 30.0

#: Repositories an Application read: their refs are watched (:func:`watch_git`).
WATCHED: set[Path] = set()


async def run(ctx: LabContext) -> None:
    """The lab's watch controller: the Proxmox change feed (Git is watched by ``argocd.run``,
    which starts :func:`watch_git` next to its own loop)."""
    await watch_pve(ctx)


def _pve_request(ctx: LabContext) -> tuple[str, dict, ssl.SSLContext] | None:
    """URL base, headers and TLS context for the pve process, or None while it is not ready."""
    conn_path = getattr(ctx.pve, "conn_path", None)
    if conn_path is None:
        return None
    try:
        conn = json.loads(Path(conn_path).read_text())
        token = Path(conn["token_file"]).read_text().strip()
    except (OSError, ValueError, KeyError):
        return None
    token_id = conn.get("token_id") or f"{conn.get('user', 'root@pam')}!{conn.get('token_name', 'falkit')}"
    tls = ssl.create_default_context(cafile=conn["ca_file"])
    return f"https://{conn['host']}:{conn['port']}", {"Authorization": f"PVEAPIToken={token_id}={token}"}, tls


async def watch_pve(ctx: LabContext) -> None:
    """Long-poll the pve process's change feed; notify on every new sequence number."""
    if ctx.pve is None:
        return
    since, backoff = -1, 0.2
    while True:
        req = _pve_request(ctx)
        if req is None:
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
            continue
        base, headers, tls = req
        try:
            async with aiohttp.ClientSession(headers=headers) as session:
                while True:
                    url = f"{base}/twin/changes?since={since}&timeout={LONG_POLL_S:g}"
                    async with session.get(url, ssl=tls, timeout=aiohttp.ClientTimeout(total=LONG_POLL_S + 15)) as r:
                        if r.status != 200:
                            raise aiohttp.ClientResponseError(r.request_info, (), status=r.status)
                        seq = int((await r.json())["data"]["seq"])
                    backoff = 0.2
                    if seq != since:
                        since = seq
                        ctx.pve.invalidate()
                        ctx.notify()
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError, KeyError, TypeError) as e:
            log.debug("pve change feed: %s; retrying", e)
            since = -1  # the pve process may have restarted: its seq starts again
            ctx.pve.invalidate()
            ctx.notify()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)


def repo_stamp(repo: Path) -> tuple:
    """Changes whenever a commit, checkout or ref update happens (the reflog and HEAD are touched)."""
    git = repo / ".git" if (repo / ".git").is_dir() else repo
    out = []
    for name in ("logs/HEAD", "HEAD", "packed-refs"):
        try:
            out.append((git / name).stat().st_mtime_ns)
        except OSError:
            out.append(0)
    # A push to a bare repository updates refs/heads/* and writes no reflog: stamp the branch refs too.
    for dirpath, _dirs, names in os.walk(git / "refs" / "heads"):
        out += [(n, os.stat(os.path.join(dirpath, n)).st_mtime_ns) for n in sorted(names)]
    return tuple(out)


def _stamps() -> dict:
    out = {}
    for repo in list(WATCHED):
        with contextlib.suppress(OSError):
            out[repo] = repo_stamp(repo)
    return out


async def watch_git(ctx: LabContext) -> None:
    """Notify when the refs of a repository an Application read change (see the module docstring)."""
    last = _stamps()
    while True:
        await asyncio.sleep(GIT_POLL_S)
        now = _stamps()
        if now != last:
            last = now
            ctx.notify()

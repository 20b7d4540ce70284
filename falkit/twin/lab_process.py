"""The twin's second process: the Kubernetes API emulator (later also the lab API and controllers).

``python -m falkit.twin.lab_process --state-dir DIR [--host 127.0.0.1] [--port 0]`` binds a
loopback port, then atomically writes ``DIR/lab.json`` (0600)::

    {"pid": 123, "kube_server": "https://127.0.0.1:PORT2", "lab_api": "http://127.0.0.1:PORT/lab",
     "kubeconfig": "DIR/kubeconfig", "kube_ca_file": "DIR/kube-ca.crt", "lab_token_file": "DIR/lab-token"}

and serves until SIGTERM/SIGINT (clean shutdown: controllers cancelled, then the runner).

Credentials (:mod:`falkit.twin.credentials`): at every start the process makes two random tokens,
never on its command line: the Kubernetes API's admin token, in ``DIR/kubeconfig`` (0600; the
emulator authenticates as kube-apiserver does: :mod:`falkit.twin.kube.server`), and the lab API's
token in ``DIR/lab-token`` (0600). The Kubernetes API is served over TLS on its own loopback port
(``kube_server``; a CA and serving certificate made at start, ``DIR/kube-ca.crt``): client-go, so
kubectl and helm, sends a kubeconfig's credentials only over TLS. The plain-HTTP port serves the
lab API (and answers the Kubernetes paths too, with the same authentication). The Kubernetes API also accepts the admin credential of the
cluster the lab's Talos bootstrapped (``talosctl kubeconfig``: :func:`falkit.twin.lab.talos.admin_token`).
``DIR`` is made 0700.

Extension points for the lab API and controllers:

* ``build_app(store)`` returns the aiohttp app; add ``/lab/...`` routes to it (or a sub-app);
* ``LabProcess(store, app)`` runs ``controllers``: coroutine functions ``async def c(store)``
  started as tasks once the server listens, cancelled on shutdown.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import os
import signal
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from falkit.twin import credentials
from falkit.twin.kube import Store
from falkit.twin.kube import build_app as build_kube_app
from falkit.twin.kube import kubeconfig as kube_kubeconfig
from falkit.twin.kube.server import AUTH_KEY

from .lab.api import add_arguments

Controller = Callable[[Store], Awaitable[None]]


def build_app(store: Store, *, bookmark_interval: float = 60.0) -> web.Application:
    """The lab process's app: the kube emulator at ``/api``, ``/apis`` ...; ``/lab`` is reserved."""
    app = build_kube_app(store, bookmark_interval=bookmark_interval)

    async def lab_root(request: web.Request) -> web.Response:
        return web.json_response({"kind": "Lab", "kube": True, "resourceVersion": str(store.resource_version)})

    app.router.add_get("/lab", lab_root)
    return app


def write_json_atomic(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mkstemp: mode 0600
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class LabProcess:
    """Serve ``app`` on a loopback address and run controllers until stopped."""

    def __init__(self, store: Store | None = None, app: web.Application | None = None, *,
                 controllers: list[Controller] | None = None) -> None:
        self.store = store or Store()
        self.app = app or build_app(self.store)
        self.controllers = list(controllers or [])
        self.url: str | None = None
        self.tls_url: str | None = None
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task] = []

    async def start(self, host: str = "127.0.0.1", port: int = 0, *, ssl_context=None) -> str:  # noqa: ANN001
        """Listen on ``host:port`` (plain HTTP; ``url``) and, with ``ssl_context``, on a second
        ephemeral port over TLS (``tls_url``). Returns ``url``."""
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"the twin listens on loopback only, not {host}")
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        sock = site._server.sockets[0]  # noqa: SLF001 - the only way to learn an ephemeral port
        self.url = f"http://{host}:{sock.getsockname()[1]}"
        if ssl_context is not None:
            tls = web.TCPSite(self._runner, host, 0, ssl_context=ssl_context)
            await tls.start()
            self.tls_url = f"https://{host}:{tls._server.sockets[0].getsockname()[1]}"  # noqa: SLF001
        self._tasks = [asyncio.create_task(c(self.store)) for c in self.controllers]
        return self.url

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


async def serve(state_dir: Path, host: str = "127.0.0.1", port: int = 0, *,
                lab: LabProcess | None = None, args: argparse.Namespace | None = None) -> None:
    """Serve the emulator and, with ``args`` (the lab options), the lab: the lab API under
    ``/lab``, the before/empty state and the controllers (:func:`falkit.twin.lab.api.install`)."""
    ctx = None
    credentials.private_dir(state_dir)
    kube_token = credentials.new_token()
    lab_token, lab_token_file = credentials.make_token_file(state_dir, credentials.LAB_TOKEN)
    if lab is None:
        store = Store()
        app = build_app(store)
        if args is not None:
            from .lab.api import (  # noqa: PLC0415 - the lab's controllers load after the process parsed its arguments (start-up)
                LAB_TOKEN_KEY,
                install,  # noqa: PLC0415 - the lab's controllers load after the process parsed its arguments (start-up)
                lab_auth_middleware,
            )

            ctx = install(app, store, args)
            app[LAB_TOKEN_KEY] = lab_token
            app.middlewares.append(lab_auth_middleware)
        app[AUTH_KEY] = _authenticator(kube_token, ctx)
        lab = LabProcess(store, app)
    tls = credentials.make_tls(state_dir, "kube", hosts=(host,))
    url = await lab.start(host, port, ssl_context=credentials.server_ssl_context(tls))
    kube_url = lab.tls_url or url
    if ctx is not None:
        ctx.kube_server = kube_url
        ctx.kube_ca_data = tls["ca_data"]  # what talosctl kubeconfig puts in certificate-authority-data
    kubeconfig = state_dir.resolve() / "kubeconfig"
    credentials.write_private_json(kubeconfig, kube_kubeconfig(kube_url, token=kube_token, ca_data=tls["ca_data"]))
    write_json_atomic(state_dir / "lab.json", {"pid": os.getpid(), "kube_server": kube_url, "lab_api": url + "/lab",
                                               "kubeconfig": str(kubeconfig), "kube_ca_file": tls["ca_file"],
                                               "lab_token_file": str(lab_token_file)})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await lab.stop()


def _authenticator(admin_token: str, ctx) -> Callable[[str], bool]:  # noqa: ANN001 - LabContext | None
    """The Kubernetes API's token check: the twin's admin token, or the admin credential of the
    cluster the lab's Talos bootstrapped."""
    def authenticate(token: str) -> bool:
        if credentials.token_ok(token, admin_token):
            return True
        if ctx is not None and ctx.bootstrapped:
            from .lab.talos import admin_token as cluster_token  # noqa: PLC0415 - the lab's controllers load after the process parsed its arguments (start-up)

            return credentials.token_ok(token, cluster_token(ctx))
        return False
    return authenticate


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m falkit.twin.lab_process", description=__doc__.splitlines()[0])
    ap.add_argument("--state-dir", required=True, type=Path)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--emulator-only", action="store_true", help="serve the Kubernetes emulator without the lab")

    add_arguments(ap)
    args = ap.parse_args(argv)
    asyncio.run(serve(args.state_dir, args.host, args.port, args=None if args.emulator_only else args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

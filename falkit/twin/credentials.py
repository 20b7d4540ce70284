"""The twin's credentials and snapshot files: who may talk to the twin, and where it may write.

The twin's control APIs (the Proxmox process' control API, the lab API, the Kubernetes API) answer
only requests that carry a credential from a file the operator alone can read: each process makes a
random token when it starts and writes it to a 0600 file in the twin's state directory (0700);
the connection files (``connection.json``, ``pve.json``, ``lab.json``, all 0600) name those files,
never the secrets themselves, and no secret is ever put on a command line (``ps`` shows every
user the argv of every process). Clients send ``Authorization: Bearer <token>``.

Snapshots hold the lab's secrets (the GitOps repository's password, the Talos secrets and
bootstrap tokens): they are written only inside the twin's state directory, mode 0600, never over
a file that is not a snapshot, never through a symlink (:func:`snapshot_path`, :func:`write_private`).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hmac
import ipaddress
import json
import os
import secrets
import ssl
from pathlib import Path
from typing import Any

PVE_CONTROL_TOKEN = "pve-control-token"
LAB_TOKEN = "lab-token"
SNAPSHOT_DIR = "snapshots"


def new_token() -> str:
    return secrets.token_urlsafe(32)


def private_dir(path: str | os.PathLike) -> Path:
    """``path`` as a directory only its owner can enter (created if missing; mode 0700)."""
    p = Path(path)
    p.mkdir(parents=True, exist_ok=True)
    os.chmod(p, 0o700)
    return p


def write_private(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` atomically with mode 0600 from the start; a symlink at ``path`` is replaced,
    never followed (the temporary file is created with O_EXCL | O_NOFOLLOW)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            os.fchmod(fh.fileno(), 0o600)
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def write_private_json(path: str | os.PathLike, data: Any) -> Path:
    return write_private(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def make_token_file(state_dir: str | os.PathLike, name: str) -> tuple[str, Path]:
    """A new random token written to ``state_dir/name`` (0600, the directory made 0700)."""
    token = new_token()
    path = write_private(private_dir(state_dir) / name, token + "\n")
    return token, path.resolve()


def read_token(path: str | os.PathLike | None) -> str | None:
    if not path:
        return None
    try:
        return Path(path).read_text().strip() or None
    except OSError:
        return None


def token_ok(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison; False when either side is missing."""
    return bool(given) and bool(expected) and hmac.compare_digest(str(given).encode(), str(expected).encode())


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    parts = (header or "").strip().split(" ")
    if len(parts) < 2 or parts[0].lower() != "bearer" or not parts[1]:
        return None
    return parts[1]


def _is_snapshot(path: Path) -> bool:
    """A JSON object whose ``format`` is one of falkit's snapshot formats (``falkit-...``)."""
    try:
        with open(path, "rb") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and str(data.get("format", "")).startswith("falkit-")


def snapshot_path(state_dir: str | os.PathLike, requested: str | os.PathLike | None, default_name: str) -> Path:
    """Where a snapshot may be written: ``requested`` (default ``STATE_DIR/default_name``) after
    resolving symlinks and ``..``, if it lies inside the state directory; a relative path is taken
    relative to the state directory. Raises ValueError otherwise, or when it would replace a
    file that is not a snapshot (the twin's tokens, its connection files)."""
    root = Path(os.path.realpath(state_dir))
    want = Path(requested) if requested else root / default_name
    if not want.is_absolute():
        want = root / want
    real = Path(os.path.realpath(want))
    if real == root or root not in real.parents:
        raise ValueError(f"snapshots are written only inside the twin's state directory {root} (they hold the "
                         f"lab's secrets), not to {want}")
    if real.exists() and (not real.is_file() or not _is_snapshot(real)):
        raise ValueError(f"{real} exists and is not a snapshot: not overwritten")
    parent = real.parent
    if not parent.exists():
        private_dir(parent)
    return real


# ------------------------------------------------------------------ clients: find the token of a URL

# kind -> (URL key, token-file key) in connection.json, and in the process's own ready file.
_KEYS = {"pve_control": (("connection.json", "pve_control", "pve_control_token_file"),
                         ("pve.json", "control", "control_token_file")),
         "lab_api": (("connection.json", "lab_api", "lab_token_file"),
                     ("lab.json", "lab_api", "lab_token_file"))}


def twin_dirs() -> list[Path]:
    """The twin directories a client may be talking to: ``$FALKIT_TWIN_DIR`` (set by the tool
    wrappers), ``$FALKIT_STATE_DIR/twin``, ``~/.local/state/falkit/twin``."""
    out = []
    if os.environ.get("FALKIT_TWIN_DIR"):
        out.append(Path(os.environ["FALKIT_TWIN_DIR"]))
    if os.environ.get("FALKIT_STATE_DIR"):
        out.append(Path(os.environ["FALKIT_STATE_DIR"]) / "twin")
    out.append(Path(os.path.expanduser("~")) / ".local" / "state" / "falkit" / "twin")
    return out


def _norm(url: str) -> str:
    url = str(url or "").rstrip("/")
    return url[:-4] if url.endswith("/lab") else url


def find_token(kind: str, url: str, dirs: list[Path] | None = None) -> str | None:
    """The token for ``url`` (a ``kind`` of API: ``pve_control`` or ``lab_api``) from the
    connection files of the twin serving it, or None when no connection file names that URL."""
    for d in dirs if dirs is not None else twin_dirs():
        for fname, url_key, file_key in _KEYS[kind]:
            try:
                data = json.loads((d / fname).read_text())
            except (OSError, ValueError):
                continue
            if isinstance(data, dict) and _norm(data.get(url_key, "")) == _norm(url):
                token = read_token(data.get(file_key))
                if token:
                    return token
    return None


# ------------------------------------------------------------------ TLS for the Kubernetes API

def make_tls(state_dir: str | os.PathLike, name: str = "kube", hosts: tuple[str, ...] = ("127.0.0.1",)) -> dict:
    """A CA and a serving certificate signed by it for ``hosts`` (loopback IPs and ``localhost``),
    as an apiserver has (client-go sends a kubeconfig's credentials only over TLS:
    k8s.io/client-go/tools/clientcmd/client_config.go merges the user's auth info only when
    ``isConfigTransportTLS``). Writes ``STATE/<name>-ca.crt``, ``STATE/<name>.crt``,
    ``STATE/<name>.key`` (0600); the CA's key is not kept. Returns the paths and ``ca_data``
    (base64 PEM, for a kubeconfig's ``certificate-authority-data``)."""
    from cryptography import x509  # noqa: PLC0415 - cryptography loads only when a certificate is made (the stand-ins import this module)
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415 - cryptography loads only when a certificate is made (the stand-ins import this module)
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415 - cryptography loads only when a certificate is made (the stand-ins import this module)
    from cryptography.x509.oid import NameOID  # noqa: PLC0415 - cryptography loads only when a certificate is made (the stand-ins import this module)

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "falkit-twin-kubernetes-ca")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=365))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName("localhost")]
    sans += [x509.IPAddress(ipaddress.ip_address(h)) for h in hosts]
    crt = (x509.CertificateBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
           .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
           .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=365))
           .add_extension(x509.SubjectAlternativeName(sans), critical=False)
           .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
           .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
           .sign(ca_key, hashes.SHA256()))
    root = private_dir(state_dir)
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    paths = {"ca_file": root / f"{name}-ca.crt", "cert_file": root / f"{name}.crt", "key_file": root / f"{name}.key"}
    write_private(paths["ca_file"], ca_pem.decode())
    write_private(paths["cert_file"], crt.public_bytes(serialization.Encoding.PEM).decode())
    write_private(paths["key_file"], key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()).decode())
    return {**{k: str(v.resolve()) for k, v in paths.items()}, "ca_data": base64.b64encode(ca_pem).decode()}


def server_ssl_context(tls: dict):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tls["cert_file"], tls["key_file"])
    return ctx

"""Remove secrets from a run archive.

``collect_secrets(spec=None, private_dir=None, connection=None)`` gathers the values to remove: the Proxmox token
secret, the TrueNAS API key, and every secret value in the private state directory (Talos secrets,
talosconfig, kubeconfig: certificates, keys, tokens), plus the twin's token/password/key files.
``scrub_tree(dir, secrets)`` rewrites every text file under ``dir`` (ipynb, html, json, jsonl, csv,
txt, ...) with:

- each known secret value replaced — as written, JSON-escaped, HTML-escaped, base64-encoded, and
  truncated prefixes of long secrets (a plan table cuts long values with ``…``);
- patterns that are secrets whatever their value: ``PVEAPIToken=...``, PEM blocks (also cut ones),
  ``Bearer ...`` tokens, and ``token``/``password``/``secret``/``key``-named YAML or JSON fields
  holding long values.

JSON stays valid: replacements contain no quote or backslash.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

MARK = "***REDACTED***"
MIN_SECRET_LEN = 6
PREFIX_LEN = 16  # a cut secret keeps at least this many leading characters to be found
TEXT_SUFFIXES = {".ipynb", ".html", ".htm", ".json", ".jsonl", ".csv", ".txt", ".log", ".md", ".yaml", ".yml", ".out", ".err"}

_PATTERNS = [
    (re.compile(r"PVEAPIToken=[^\s\"'<>&\\]+"), "PVEAPIToken=" + MARK),
    (re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----.*?-----END \1-----", re.S), "-----" + MARK + " PEM-----"),
    (re.compile(r"-----BEGIN ([A-Z0-9 ]*(PRIVATE KEY|CERTIFICATE))-----(?:\\n|\n|[A-Za-z0-9+/=\s])*"), "-----" + MARK + " PEM-----"),
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 " + MARK),
    # key: value / "key": "value" with a secret-named key and a long value (YAML, JSON, repr)
    (re.compile(r"(?i)(\b(?:token|password|passwd|secret|api[_-]?key|private[_-]?key|bootstrap[_-]?token|"
                r"client-key-data|client-certificate-data|certificate-authority-data)"
                r"[\"']?\s*[:=]\s*[\"']?)([A-Za-z0-9+/=._~-]{20,})"), r"\1" + MARK),
]

# falkit's own bookkeeping in the private dir: the run lock, the twin instance marker, the index of
# benchmark result files (one path a line) and the results themselves (fio output), and the rollback's
# before-state (falkit.steps.rollback.state.BEFORE_FILE: the lab's compared fields — Git paths such as
# kubernetes/platform/traefik, the MetalLB pool, file checksums — that the archive shows on purpose; read
# as a secret store, its token-like values redacted every Git path and pool range in the plans).
NOT_SECRET = {"run.lock", "twin-started", "bench-results.txt", "before-state.json"}
_SECRET_FILE = re.compile(r"token|password|secret|key|kubeconfig|talosconfig|\.pem$|\.crt$", re.I)
_SECRET_KEY = re.compile(r"token|password|secret|key|crt|cert|data$|ca$|id$", re.I)


def _leaves(value: Any, key: str = "") -> Iterable[tuple[str, str]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, str(k))
    elif isinstance(value, list):
        for v in value:
            yield from _leaves(v, key)
    elif isinstance(value, str):
        yield key, value


def _is_path(value: str) -> bool:
    """An absolute file path on one line (a base64 secret may start with "/", but has no
    "/name/" segment that exists on this machine)."""
    if not value.startswith("/") or "\n" in value or " " in value:
        return False
    parts = [p for p in value.split("/") if p]
    return len(parts) >= 2 and Path("/" + parts[0]).is_dir()


def secrets_in_text(text: str) -> set[str]:
    """Secret values of a private file: the whole text if it is one value, else the values of
    secret-named keys and any long token-like leaf of its YAML/JSON documents."""
    text = text.strip()
    out: set[str] = set()
    if not text:
        return out
    if "\n" not in text and " " not in text:
        if not _is_path(text):
            out.add(text)
        return out
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError:
        docs = []
    for doc in docs:
        for key, leaf in _leaves(doc):
            leaf = leaf.strip()
            if len(leaf) < MIN_SECRET_LEN:
                continue
            if _is_path(leaf):
                continue  # a file path (a talosconfig/kubeconfig's CA file, a state dir), not a secret
            tokenlike = len(leaf) >= 20 and re.fullmatch(r"[A-Za-z0-9+/=._~:-]+", leaf) and not leaf.startswith("http")
            if _SECRET_KEY.search(key) and not leaf.startswith(("http://", "https://")) or tokenlike:
                out.add(leaf)
                if "\n" in leaf:  # a PEM or multi-line value: also its lines
                    out.update(ln for ln in leaf.splitlines() if len(ln) >= 20 and "-----" not in ln)
    return out


def collect_secrets(spec: Any = None, private_dir: str | os.PathLike | None = None,
                    connection: dict | None = None) -> set[str]:
    """Every secret value falkit knows for a lab: its spec's secret references, its private dir,
    its twin connection."""
    connection = connection or {}
    out: set[str] = set()
    if spec is not None:
        refs = [spec.secrets.proxmox_token]
        if spec.secrets.proxmox_root_password is not None:
            refs.append(spec.secrets.proxmox_root_password)
        if spec.truenas is not None:
            refs.append(spec.truenas.api_key)
        if spec.gitops is not None and spec.gitops.credentials is not None:
            refs.append(spec.gitops.credentials)
        for ref in refs:
            value = ref.resolve()
            if value:
                out.add(value.strip())
    files: list[Path] = []
    if private_dir is not None and Path(private_dir).is_dir():
        files += [p for p in Path(private_dir).rglob("*") if p.is_file() and p.name not in NOT_SECRET
                  and "bench" not in p.relative_to(private_dir).parts[:-1]]
    px = connection.get("proxmox") or {}
    for key in ("token_file", "password_file"):
        if px.get(key):
            files.append(Path(px[key]))
    if px.get("ca_file"):
        key_file = Path(px["ca_file"]).with_suffix(".key")
        files.append(key_file)
    tn = connection.get("truenas") or {}
    if tn.get("key_file"):
        files.append(Path(tn["key_file"]))
    kc = (connection.get("kubernetes") or {}).get("kubeconfig")
    if kc:
        files.append(Path(kc))
    for f in files:
        try:
            text = f.read_text(errors="replace")
        except OSError:
            continue
        if _SECRET_FILE.search(f.name) or f.parent == Path(private_dir or "/nonexistent"):
            out |= secrets_in_text(text)
    return {s for s in out if len(s) >= MIN_SECRET_LEN}


def _variants(secret: str) -> set[str]:
    out = {secret, json.dumps(secret)[1:-1], html.escape(secret), html.escape(json.dumps(secret)[1:-1])}
    if len(secret) >= 12:
        out.add(base64.b64encode(secret.encode()).decode().rstrip("="))
    return {v for v in out if len(v) >= MIN_SECRET_LEN}


def scrub_text(text: str, secrets: Iterable[str]) -> str:
    """``text`` without any of ``secrets`` (and their encodings) or secret-shaped patterns."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        for v in sorted(_variants(secret), key=len, reverse=True):
            text = text.replace(v, MARK)
        if len(secret) > PREFIX_LEN:  # cut forms: the first PREFIX_LEN+ characters, then anything
            for v in {secret, json.dumps(secret)[1:-1]}:
                if v[:PREFIX_LEN] not in text:  # the pattern starts with this literal: no match (a str search
                    continue  # is ~10x cheaper than the regex's scan of a multi-MB HTML report; issue 17)
                head = re.escape(v[:PREFIX_LEN])
                text = re.sub(head + r"[^\s\"'<>…]*", MARK, text)
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


def scrub_tree(directory: str | os.PathLike, secrets: Iterable[str]) -> list[Path]:
    """Scrub every text file under ``directory`` in place; returns the files that changed."""
    secrets = {s for s in secrets if s and len(s) >= MIN_SECRET_LEN}
    changed = []
    for path in sorted(Path(directory).rglob("*")):
        if not path.is_file() or path.suffix.lower() not in TEXT_SUFFIXES:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        new = scrub_text(text, secrets)
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(path)
    return changed


def find_secrets(directory: str | os.PathLike, secrets: Iterable[str]) -> list[tuple[Path, str]]:
    """(file, secret) pairs still present under ``directory`` — for tests and a final check."""
    hits = []
    for path in sorted(Path(directory).rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            for s in secrets:
                if s.encode() in data:
                    hits.append((path, s))
    return hits

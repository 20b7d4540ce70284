"""Kubernetes API emulator for the twin.

``Store`` holds the objects (usable in-process by controllers); ``build_app(store)`` serves them
over HTTP to the official ``kubernetes`` client, its DynamicClient, and kubectl.
"""

from .crd import diskpool_crd, load_crd_file
from .errors import ApiError
from .faults import Faults
from .server import build_app, kubeconfig
from .store import Event, Store

__all__ = ["ApiError", "Event", "Faults", "Store", "build_app", "diskpool_crd", "kubeconfig", "load_crd_file"]

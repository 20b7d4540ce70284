"""Reading a Pod as an operator reads ``kubectl get pods``: :func:`pod_state`."""

from __future__ import annotations


def pod_state(pod: dict) -> str:
    """``Running`` for a pod whose containers run; else what the operator must read: the waiting
    reason of a container (``CrashLoopBackOff``; a crash-looping pod's *phase* stays ``Running``),
    its restarts and the last termination's message (Kubernetes ContainerStatus: state.waiting,
    lastState.terminated), or the pod phase."""
    st = pod.get("status") or {}
    phase = st.get("phase", "Pending")
    for cs in st.get("containerStatuses") or []:
        waiting = (cs.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason"):
            last = ((cs.get("lastState") or {}).get("terminated") or {}).get("message") or ""
            last = last.strip().splitlines()[-1][:160] if last.strip() else ""
            restarts = cs.get("restartCount", 0)
            return (f"{waiting['reason']}" + (f" after {restarts} restart(s)" if restarts else "")
                    + (f": {last}" if last else ""))
    return phase

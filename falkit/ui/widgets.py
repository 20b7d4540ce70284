"""What a notebook shows: tables, live progress, approval gates and the lab dashboard.

Two modes, chosen by :func:`interactive`:

- **JupyterLab** (the kernel has ``JPY_SESSION_NAME``; docs/FACTS.md "Headless detection"): ipywidgets —
  an ``IntProgress`` per task in an ``HBox``, Apply buttons, a refreshable dashboard;
- **headless** (papermill, nbval, plain Python): never a widget. Progress is printed as plain log
  lines (``[20-vms] create talos-worker-02: 40% cloning``), the dashboard as text, and nothing waits
  for a click. ``FALKIT_HEADLESS=1`` forces headless mode; ``FALKIT_INTERACTIVE=1`` forces
  JupyterLab mode (tests drive the runbook's gates in-process that way).

The approval gate and the lab dashboard are documented in docs/INTERACTIVE.md; the dashboard's code
is in :mod:`falkit.runbook.dashboard`, which builds on this module (this module does not import it: a gate
refreshes the dashboard it is given, else :func:`last_dashboard`, the last one shown in the kernel).

Tables are displayed as a bundle with both ``text/plain`` and ``text/html`` (readable in a terminal,
a diff and the HTML archive).
"""

from __future__ import annotations

import os
import sys
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from html import escape
from typing import Any, TextIO


def in_ipython() -> bool:
    try:
        from IPython import get_ipython  # noqa: PLC0415 - IPython/ipywidgets only inside a kernel; the CLI and `falkit run` never load them
    except ImportError:
        return False
    return get_ipython() is not None


def interactive() -> bool:
    """True in a JupyterLab kernel (``JPY_SESSION_NAME`` set), False for papermill/nbval/scripts."""
    if os.environ.get("FALKIT_HEADLESS"):
        return False
    if os.environ.get("FALKIT_INTERACTIVE"):
        return True
    return bool(os.environ.get("JPY_SESSION_NAME")) and in_ipython()


def show(obj: Any) -> None:
    """Display ``obj`` in a kernel (``IPython.display.display``); a plain string is printed (a stream
    output: readable in the notebook, echoed by ``falkit run``)."""
    if isinstance(obj, str):
        print(obj, flush=True)
    elif in_ipython():
        from IPython.display import display  # noqa: PLC0415 - IPython/ipywidgets only inside a kernel; the CLI and `falkit run` never load them

        display(obj)
    else:
        print(str(obj), flush=True)


def show_error(exc: BaseException) -> None:
    """An error where a cell's output would be (in a gate or a deferred cell): its type and words."""
    text = f"{type(exc).__name__}: {exc}"
    if in_ipython():
        from IPython.display import HTML, display  # noqa: PLC0415 - IPython/ipywidgets only inside a kernel; the CLI and `falkit run` never load them

        display(HTML(f"<pre style='color:#b00; white-space:pre-wrap'>{escape(text)}</pre>"))
    else:
        print(text, flush=True)


def html_widget(value: str) -> Any:
    """An ``ipywidgets.HTML`` (JupyterLab only): a line whose ``value`` can be changed after it is shown."""
    import ipywidgets as w  # noqa: PLC0415 - IPython/ipywidgets only inside a kernel; the CLI and `falkit run` never load them

    return w.HTML(value)


def output_area() -> Any:
    """An ``ipywidgets.Output``: what is shown inside ``with area:`` lands there, also later."""
    import ipywidgets as w  # noqa: PLC0415 - IPython/ipywidgets only inside a kernel; the CLI and `falkit run` never load them

    return w.Output()


_LAST_DASHBOARD: list[weakref.ref] = []


def remember_dashboard(dashboard: Any) -> None:
    """Note ``dashboard`` (any object with ``start``/``stop``/``refresh``/``running``) as the last one
    displayed as a widget in this kernel (:meth:`falkit.runbook.dashboard.Dashboard.show` does)."""
    _LAST_DASHBOARD[:] = [weakref.ref(dashboard)]


def last_dashboard() -> Any:
    """The last dashboard displayed as a widget in this kernel (None if none, or collected)."""
    return _LAST_DASHBOARD[0]() if _LAST_DASHBOARD else None


# ---------------------------------------------------------------------------------------------- tables


def text_table(rows: Sequence[dict], columns: Sequence[str], limit: int = 70) -> str:
    """A fixed-width text table (cells longer than ``limit`` are cut with …)."""
    if not rows:
        return "(none)"

    def cell(v: Any) -> str:
        t = fmt_number(v) if isinstance(v, float) else "" if v is None else str(v)
        t = t.replace("\n", " ")
        return t if len(t) <= limit else t[: limit - 1] + "…"

    w = {c: max(len(c), *(len(cell(r.get(c))) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(w[c]) for c in columns).rstrip(), "  ".join("-" * w[c] for c in columns)]
    lines += ["  ".join(cell(r.get(c)).ljust(w[c]) for c in columns).rstrip() for r in rows]
    return "\n".join(lines)


TABLE_STYLE = ("<style>table.falkit-table th, table.falkit-table td {text-align: left !important; "
               "vertical-align: top; padding: 2px 8px}</style>")


class Table:
    """Rows shown as an HTML table (``_repr_html_``) and as text (``repr``/``str``)."""

    def __init__(self, rows: Iterable[dict], columns: Sequence[str] | None = None, title: str = "",
                 status_column: str | None = None, empty: str = "(none)"):
        self.rows = [dict(r) for r in rows]
        self.columns = list(columns or (self.rows[0].keys() if self.rows else []))
        self.title = title
        self.status_column = status_column
        self.empty = empty

    def __str__(self) -> str:
        body = text_table(self.rows, self.columns) if self.rows else self.empty
        return f"{self.title}\n{body}" if self.title else body

    __repr__ = __str__

    def _repr_html_(self) -> str:
        title = f"<p><b>{escape(self.title)}</b></p>" if self.title else ""
        if not self.rows:
            return f"{title}<p>{escape(self.empty)}</p>"
        head = "".join(f"<th>{escape(c)}</th>" for c in self.columns)
        body = []
        for r in self.rows:
            style = ""
            if self.status_column:
                v = r.get(self.status_column)
                bad = v in (False, "FAIL", "error", "failed")
                warn = v in ("warning",)
                style = " style='background:#fdd'" if bad else " style='background:#ffd'" if warn else ""
            body.append(f"<tr{style}>" + "".join(f"<td>{escape(_fmt(r.get(c)))}</td>" for c in self.columns) + "</tr>")
        return f"{title}{TABLE_STYLE}<table class='falkit-table'><tr>{head}</tr>{''.join(body)}</table>"


def _fmt(v: Any) -> str:
    if v is True:
        return "ok"
    if v is False:
        return "FAIL"
    if isinstance(v, float):
        return fmt_number(v)
    return "" if v is None else str(v)


def fmt_number(v: float) -> str:
    """A float as a person reads it: ``166.7``, ``0.123``, ``26,667`` — never ``166.66666666666666``."""
    if v != v:  # NaN
        return ""
    if v in (float("inf"), float("-inf")):
        return str(v)
    if (v == int(v) or abs(v) >= 1000) and abs(v) < 1e15:
        return f"{round(v):,}"
    if abs(v) >= 100:
        text = f"{v:,.1f}"
    elif abs(v) >= 1:
        text = f"{v:.2f}"
    else:
        return f"{v:.3g}"
    return text.rstrip("0").rstrip(".")


CHECK_COLUMNS = ("check", "subject", "expected", "observed", "ok", "fix")


class CheckList(list):
    """What ``lab.checks(step)`` returns: a plain ``list`` of :class:`~falkit.steps.base.Check`, shown as
    one table.

    The runbook displays the table itself (also inside a gate's output, where a return value would
    not show) and returns the list with ``shown=True``: the notebook's echo of that same call then
    adds nothing — before, the list's repr ``[Check(check=…), …]`` followed the table. Displayed
    again later (a cell with just ``checks``), it is the table; ``str``/``repr`` are the text table.
    """

    def __init__(self, checks: Iterable[Any] = (), title: str = "", *, shown: bool = False):
        super().__init__(checks)
        self.title = title
        self._echo_pending = shown

    def table(self) -> Table:
        return Table([c.row() for c in self], columns=CHECK_COLUMNS, title=self.title, status_column="ok",
                     empty="(no checks)")

    def __repr__(self) -> str:
        return str(self.table())

    __str__ = __repr__

    def _repr_html_(self) -> str:
        return self.table()._repr_html_()

    def _ipython_display_(self) -> None:
        if self._echo_pending:  # the runbook already displayed this table: the echo adds nothing
            self._echo_pending = False
            return
        from IPython.display import display  # noqa: PLC0415 - IPython/ipywidgets only inside a kernel; the CLI and `falkit run` never load them

        display(self.table())


# ---------------------------------------------------------------------------------------------- progress


class Progress:
    """Live progress per task (implements ``falkit.steps.base.Progress``).

    ``update = progress.task("create talos-worker-02", total=100)`` then ``update(done, message)``.
    ``total=None`` means ``done`` is a fraction (0..1). A message starting with "failed" ends the task
    as failed: a red bar labelled with the message (never a green "100% failed"); headless one line
    ``[nb] task: failed: …``. Headless lines are printed when the percentage
    crosses a 10 % step, the message changes, or the task ends. Thread-safe (steps run tasks in
    parallel threads). In JupyterLab the (empty) box of bars is displayed when the ``Progress`` is
    created, so bars added from worker threads still land in the right output area.
    """

    def __init__(self, notebook: str = "falkit", *, interactive_mode: bool | None = None,
                 stream: TextIO | None = None):
        self.notebook = notebook
        self.interactive = interactive() if interactive_mode is None else interactive_mode
        self.stream = stream
        self._lock = threading.Lock()
        self._box = None
        self.state: dict[str, dict[str, Any]] = {}
        if self.interactive:  # displayed now, in the caller's thread and output area; rows are added later
            import ipywidgets as w  # noqa: PLC0415 - IPython/ipywidgets only inside a kernel; the CLI and `falkit run` never load them

            self._box = w.VBox([])
            self._box.add_class("falkit-progress")
            show(self._box)

    def _print(self, line: str) -> None:
        with self._lock:
            print(line, file=self.stream or sys.stdout, flush=True)

    def log(self, message: str) -> None:
        if self.interactive and self._box is not None:
            import ipywidgets as w  # noqa: PLC0415 - IPython/ipywidgets only inside a kernel; the CLI and `falkit run` never load them

            self._box.children = (*self._box.children, w.HTML(f"<code>{escape(message)}</code>"))
        else:
            self._print(f"[{self.notebook}] {message}")

    def task(self, name: str, total: float | None = None) -> Callable[[float, str], None]:
        total_f = float(total) if total else 1.0
        st = {"pct": -1, "bucket": -1, "message": None}
        self.state[name] = st
        bar = label = None
        if self.interactive:
            import ipywidgets as w  # noqa: PLC0415 - IPython/ipywidgets only inside a kernel; the CLI and `falkit run` never load them

            bar = w.IntProgress(value=0, min=0, max=100, description="", layout=w.Layout(width="40%"))
            label = w.Label(value="")
            row = w.HBox([w.Label(value=name, layout=w.Layout(width="30%")), bar, label])
            with self._lock:
                self._box.children = (*self._box.children, row)

        def update(done: float, message: str = "") -> None:
            pct = max(0, min(100, int(round(100.0 * float(done) / total_f))))
            failed = message.lower().startswith("failed")
            if bar is not None:
                if failed:  # a failed task is red and says so; it is not "100%" of anything
                    bar.bar_style = "danger"
                    label.value = message
                else:
                    bar.value = pct
                    label.value = f"{pct}% {message}".strip()
                    bar.bar_style = "success" if pct >= 100 else ""
                st.update(pct=pct, message=message, failed=failed)
                return
            bucket = pct // 10
            if failed:
                if message != st["message"]:
                    st.update(pct=pct, bucket=bucket, message=message, failed=True)
                    self._print(f"[{self.notebook}] {name}: {message}")
                return
            if bucket != st["bucket"] or message != st["message"] or (pct == 100 and st["pct"] != 100):
                st.update(pct=pct, bucket=bucket, message=message)
                self._print(f"[{self.notebook}] {name}: {pct}%" + (f" {message}" if message else ""))

        return update


# ---------------------------------------------------------------------------------------------- approval


class ApprovalGate:
    """An Apply button under a step's plan; nothing is applied until it is pressed.

    - ``on_apply()`` runs (inside the gate's ``Output``, so its progress bars and messages appear
      under the buttons) when approved; it returns True once the step converged. The buttons are
      then hidden and the status says "applied and converged" (``state == "converged"``).
    - Changes listed in ``destructive`` (can lose data: deleting a VM, a disk, a volume; shrinking)
      or ``disruptive`` (changes identity or needs a restart: a NIC's MAC or bridge) need a second,
      explicit click: Apply shows them with a red "Confirm" button and a "Cancel" button
      (``state == "confirming"``); only Confirm applies.
    - ``on_apply`` raising: the error is shown in the gate, Apply is enabled again (steps are
      idempotent, so retrying is safe) and ``state == "failed"``; returning False: ``"not converged"``.
    - While ``on_apply`` runs, the lab dashboard (``dashboard``, else the last one shown in this
      kernel) refreshes from a background thread every ``refresh_s``, so it moves while the kernel
      is busy in the button's callback; it is refreshed once more at the end.
    - ``refused`` (the runbook's refusal and how to allow it): the gate has **no** Apply button; it
      says the plan is refused and why (``state == "refused"``). Nothing a click does can apply it.
    - ``on_apply`` returning None: the plan changed under the gate (the runbook re-plans at click
      time and called :meth:`replan`); nothing was applied and the gate waits again.
    - Only for JupyterLab: headless runs never build a gate and never wait for a click (the runbook
      applies iff its ``apply`` parameter is true). ``str(gate)`` says what it waits for.
    """

    def __init__(self, title: str, on_apply: Callable[[], bool | None], destructive: Sequence[str] = (), *,
                 disruptive: Sequence[str] = (), dashboard: Any = None, refresh_s: float = 1.0,
                 refused: str | None = None):
        import ipywidgets as w  # noqa: PLC0415 - IPython/ipywidgets only inside a kernel; the CLI and `falkit run` never load them

        self.on_apply = on_apply
        self.dashboard = dashboard
        self.refresh_s = refresh_s
        self.error: BaseException | None = None
        self.heading = w.HTML("")
        self.apply_button = w.Button(description="Apply", button_style="primary", icon="play", tooltip=title)
        self.confirm_button = w.Button(description="Confirm", button_style="danger", icon="exclamation-triangle",
                                       layout=w.Layout(display="none", width="auto"))
        self.cancel_button = w.Button(description="Cancel", layout=w.Layout(display="none"))
        self.warning = w.HTML("", layout=w.Layout(display="none"))
        self.status = w.HTML("")
        self.output = w.Output()
        self.apply_button.on_click(self._on_apply)
        self.confirm_button.on_click(self._on_confirm)
        self.cancel_button.on_click(self._on_cancel)
        self.buttons = w.HBox([self.apply_button, self.confirm_button, self.cancel_button])
        self.widget = w.VBox([self.heading, self.buttons, self.warning, self.status, self.output])
        self.widget.add_class("falkit-approval")
        self._setup(title, destructive, disruptive, refused)

    def _setup(self, title: str, destructive: Sequence[str], disruptive: Sequence[str], refused: str | None) -> None:
        self.title = title
        self.destructive = list(destructive)
        self.disruptive = [d for d in disruptive if d not in self.destructive]
        self.refused = refused
        self.confirm_button.description = f"Confirm {self._risky_words()}"
        self.warning.layout.display = "none"
        self.confirm_button.layout.display = self.cancel_button.layout.display = "none"
        if refused:
            self.heading.value = f"<b>{escape(title)}</b> — <b style='color:#b00'>refused</b>: nothing can be applied here."
            self.apply_button.layout.display = "none"
            self.buttons.layout.display = "none"
            self.apply_button.disabled = True
            self._set_status(f"<b style='color:#b00'>refused:</b> {escape(refused)}", "refused")
            return
        self.heading.value = (f"<b>{escape(title)}</b> — review the plan above; nothing is applied until you press "
                              "Apply.")
        self.apply_button.layout.display = self.buttons.layout.display = ""
        self.apply_button.disabled = False
        self._set_status("<i>waiting for approval</i>", "waiting")

    def replan(self, title: str, destructive: Sequence[str] = (), disruptive: Sequence[str] = (), *,
               refused: str | None = None) -> None:
        """The plan changed (re-planned at click time): show the new title/risks, wait for a new click."""
        self._setup(title, destructive, disruptive, refused)
        if not refused:
            self._set_status("<b style='color:#a60'>the lab changed since the plan was shown</b>: nothing applied; "
                             "review the new plan below and press Apply again", "waiting")

    @property
    def done(self) -> bool:
        return self.state == "converged"

    @property
    def needs_confirmation(self) -> bool:
        return bool(self.destructive or self.disruptive)

    def _risky_words(self) -> str:
        parts = []
        if self.destructive:
            parts.append(f"{len(self.destructive)} destructive")
        if self.disruptive:
            parts.append(f"{len(self.disruptive)} disruptive")
        return " + ".join(parts) + " change(s)"

    def __repr__(self) -> str:
        return f"[approval gate: {self.title} — {self.state}]"

    def _ipython_display_(self) -> None:
        from IPython.display import display  # noqa: PLC0415 - IPython/ipywidgets only inside a kernel; the CLI and `falkit run` never load them

        display(self.widget)

    def _set_status(self, html: str, state: str) -> None:
        self.state = state
        self.status.value = html

    def _on_apply(self, _button: Any = None) -> None:
        if self.state in ("applying", "converged", "refused") or self.refused:
            return
        if self.needs_confirmation:
            items = "".join(f"<li>{escape(d)} <b style='color:#b00'>(destructive: can lose data)</b></li>"
                            for d in self.destructive)
            items += "".join(f"<li>{escape(d)} <b style='color:#a60'>(disruptive: identity/restart)</b></li>"
                             for d in self.disruptive)
            self.warning.value = f"<b>Confirm these changes explicitly:</b><ul>{items}</ul>"
            self.warning.layout.display = ""
            self.confirm_button.layout.display = self.cancel_button.layout.display = ""
            self.confirm_button.disabled = self.cancel_button.disabled = False
            self.apply_button.disabled = True
            self._set_status("<i>waiting for confirmation</i>", "confirming")
            return
        self._run()

    def _on_confirm(self, _button: Any = None) -> None:
        if self.state == "confirming" and not self.refused:
            self._run()

    def _on_cancel(self, _button: Any = None) -> None:
        if self.state != "confirming":
            return
        self.warning.layout.display = "none"
        self.confirm_button.layout.display = self.cancel_button.layout.display = "none"
        self.apply_button.disabled = False
        self._set_status("<i>cancelled: nothing applied; waiting for approval</i>", "waiting")

    def _dashboard(self) -> Any:
        return self.dashboard if self.dashboard is not None else last_dashboard()

    def _run(self) -> None:
        self.apply_button.disabled = self.confirm_button.disabled = self.cancel_button.disabled = True
        self._set_status("<i>applying… (progress below)</i>", "applying")
        self.error = None
        dash = self._dashboard()
        started = dash is not None and not dash.running
        if started:
            dash.start(self.refresh_s)
        ok: bool | None = False
        try:
            with self.output:
                try:
                    ok = self.on_apply()
                except Exception as exc:  # shown to the operator in the gate; the step records it
                    self.error = exc
        finally:
            if started:
                dash.stop()
            if dash is not None:
                try:
                    dash.refresh()
                except Exception:  # the dashboard shows what it can; the gate's result stands
                    pass
        if ok is None and self.error is None:  # re-planned: replan() set the gate up again
            return
        self.warning.layout.display = "none"
        self.confirm_button.layout.display = self.cancel_button.layout.display = "none"
        if self.error is not None:
            exc = self.error
            self.apply_button.disabled = False
            self._set_status(f"<b style='color:#b00'>failed:</b> {escape(type(exc).__name__)}: "
                             f"{escape(str(exc))} — fix the cause and press Apply again", "failed")
        elif ok:
            self.apply_button.layout.display = "none"
            self.buttons.layout.display = "none"
            self._set_status("<b style='color:#070'>✔ applied and converged</b> (a fresh plan is empty)", "converged")
        else:
            self.apply_button.disabled = False
            self._set_status("<b style='color:#a60'>applied, not converged</b> — press Apply to retry", "not converged")

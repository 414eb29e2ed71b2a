"""The status page for people: ``GET /`` from a browser.

A pure function of the ``/status`` document (``app.status_document``): the same snapshot,
verdicts and times the kubelet and Prometheus see, rendered as one self-contained HTML
page: inline CSS, no script, no outside asset, and a ``<meta http-equiv="refresh">`` so
the page refreshes itself.  Every value is escaped; the document carries only reason
codes, message codes, names, numbers and times, never raw log text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any, Final

REFRESH_SECONDS: Final = 5
HTML_CONTENT_TYPE: Final = "text/html"

_STYLE: Final = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#1d1d1f;background:#fafafa}
h1{font-size:1.4rem;margin:0 0 .2rem}h2{font-size:1.1rem;margin:1.6rem 0 .5rem}
.meta{color:#555;font-size:.9rem}
table{border-collapse:collapse;background:#fff;margin-bottom:.6rem;min-width:24rem}
th,td{border:1px solid #ddd;padding:.3rem .6rem;text-align:left;font-size:.9rem;
vertical-align:top}th{background:#f0f0f0}
.ok{color:#0a6b2d;font-weight:600}.failing{color:#b00020;font-weight:600}
.info{color:#555}.code{font-family:ui-monospace,monospace}
.verdicts{display:flex;gap:.8rem;flex-wrap:wrap}
.verdict{border:2px solid #ddd;border-radius:6px;padding:.5rem .9rem;background:#fff;
min-width:10rem}.verdict.ok{border-color:#0a6b2d}.verdict.failing{border-color:#b00020}
"""


def wants_html(accept: str) -> bool:
    """Content negotiation for ``/``: a browser asks for HTML; curl (``*/*``) gets text."""
    for item in accept.split(","):
        media = item.split(";", 1)[0].strip().lower()
        if media in {"text/html", "application/xhtml+xml"}:
            return True
    return False


def render_page(document: Mapping[str, Any]) -> str:
    """The whole page for one ``/status`` document."""
    kube = document.get("kube")
    sections = [
        _header(document, kube),
        _verdicts(document["verdicts"]),
        _checks(document["verdicts"]),
        _boot(document["boot"]),
        _cluster(document["cluster"]),
        _kubernetes(kube),
        _log_source(document["log"]),
        _probes(document["probes"]),
        _timeline(document.get("recent_events", [])),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>keycloak-sidecar {_text(_pod_name(kube))}</title>"
        f"<style>{_STYLE}</style></head><body>\n" + "\n".join(sections) + "\n</body></html>\n"
    )


def _header(document: Mapping[str, Any], kube: Mapping[str, Any] | None) -> str:
    return (
        f"<h1>keycloak-sidecar {_text(document['version'])}: {_text(_pod_name(kube))}</h1>"
        f'<p class="meta">as of {_text(document["now"])}; this page refreshes every '
        f'{REFRESH_SECONDS} s. The same facts as JSON: <a href="/status">/status</a>; '
        'the verdicts: <a href="/livez?verbose">/livez</a>, '
        '<a href="/readyz?verbose">/readyz</a>, <a href="/startupz?verbose">/startupz</a>; '
        '<a href="/metrics">/metrics</a>.</p>'
    )


def _pod_name(kube: Mapping[str, Any] | None) -> str:
    return str(kube["own_pod"]) if kube and kube.get("own_pod") else "(no Kubernetes side)"


def _verdicts(verdicts: Mapping[str, Mapping[str, Any]]) -> str:
    boxes = []
    for name, verdict in verdicts.items():
        status = "ok" if verdict["ok"] else "failing"
        reasons = ", ".join(verdict["reasons"]) or "no failing check"
        boxes.append(
            f'<div class="verdict {status}" id="verdict-{_text(name)}">'
            f'<div><b>{_text(name)}</b> <span class="{status}">{status}</span></div>'
            f'<div class="code">{_text(reasons)}</div>'
            f'<div class="meta">since {_text(verdict["since"] or "-")}</div></div>'
        )
    return '<h2>Verdicts</h2><div class="verdicts">' + "".join(boxes) + "</div>"


def _checks(verdicts: Mapping[str, Mapping[str, Any]]) -> str:
    rows = [
        [
            name,
            check["name"],
            _status(check["ok"]),
            check["reason"],
            check["detail"],
            check["since"],
        ]
        for name, verdict in verdicts.items()
        for check in verdict["checks"]
    ]
    return "<h2>Checks</h2>" + _table(
        ["verdict", "check", "status", "reason", "detail", "since"], rows
    )


def _boot(boot: Mapping[str, Any]) -> str:
    rows = [[key.replace("_", " "), value] for key, value in boot.items()]
    return "<h2>Current boot</h2>" + _table(["", ""], rows, header=False)


def _cluster(cluster: Mapping[str, Any]) -> str:
    view = cluster["view"]
    if view is None:
        summary = '<p class="info">no cluster view seen in this boot\'s log yet</p>'
        return "<h2>Cluster view</h2>" + summary
    summary = (
        f"<p>view <b>{_text(view['view_id'])}</b>, {_text(view['size'])} member(s), "
        f'coordinator <span class="code">{_text(view["coordinator"])}</span>, '
        f"since {_text(cluster['view_since'] or '-')}"
        + (", merged" if view.get("merged") else "")
        + "</p>"
    )
    rows = [[m["member"], m["pod"] or "unknown"] for m in cluster["members"]]
    degraded = ""
    if cluster["degraded_at"]:
        degraded = (
            f'<p class="failing">degraded ({_text(cluster["degraded_reason"])}) at '
            f"{_text(cluster['degraded_at'])}</p>"
        )
    return "<h2>Cluster view</h2>" + summary + _table(["member", "pod"], rows) + degraded


def _kubernetes(kube: Mapping[str, Any] | None) -> str:
    if kube is None:
        return '<h2>Kubernetes</h2><p class="info">the Kubernetes side is off</p>'
    facts = [
        ["API", "reachable" if kube["api_ok"] else f"failing: {kube['api_error']}"],
        ["own pod", kube["own_pod"]],
        ["kill budget", _budget(kube)],
        ["observed at", kube["observed_at"]],
    ]
    membership = kube.get("membership")
    if membership is not None:
        verdict = "ok" if membership["ok"] else "lost"
        reason = f" ({membership['reason']})" if membership["reason"] else ""
        facts.append(["membership", verdict + reason])
    peers = [
        [p["name"], _yes(p["running"]), _yes(p["keycloak_ready"]), _yes(p["terminating"]), p["ip"]]
        for p in kube["peers"]
    ]
    return (
        "<h2>Kubernetes</h2>"
        + _table(["", ""], facts, header=False)
        + _table(["peer pod", "running", "Keycloak ready", "terminating", "IP"], peers)
    )


def _budget(kube: Mapping[str, Any]) -> str:
    if not kube["budget_enabled"]:
        return "off"
    return "slot held" if kube["kill_slot_held"] else "on, no slot held"


def _log_source(log: Mapping[str, Any]) -> str:
    state = log["state"]
    rows = [
        ["state", f"{state}: {log['state_detail']}" if log["state_detail"] else state],
        ["caught up", _yes(log["caught_up"])],
        ["lines read", log["lines_total"]],
        ["records classified", log["records_classified"]],
        ["last line at", log["last_line_at"] or "-"],
    ]
    note = '<p class="info">information only: the log source never fails a Keycloak check</p>'
    return "<h2>Log source</h2>" + _table(["", ""], rows, header=False) + note


def _probes(probes: Mapping[str, Mapping[str, Any]]) -> str:
    if not probes:
        return '<h2>Keycloak probes</h2><p class="info">HTTP probing is off</p>'
    rows = [
        [
            target,
            "-" if p["ok"] is None else _status(p["ok"]),
            p["status"] if p["status"] is not None else p["error"] or "-",
            p["latency_seconds"],
            p["ok_since"],
            p["failing_since"],
        ]
        for target, p in probes.items()
    ]
    headers = ["target", "status", "HTTP status", "latency (s)", "ok since", "failing since"]
    return "<h2>Keycloak probes</h2>" + _table(headers, rows)


def _timeline(events: Sequence[Mapping[str, Any]]) -> str:
    rows = [
        [e["at"], e["kind"], e["reason"] or "-", e["code"] or "-", e["line"] or "-"]
        for e in reversed(events)
    ]
    return "<h2>Recent events (newest first)</h2>" + _table(
        ["time", "kind", "reason", "message code", "log line"], rows
    )


def _table(headers: Sequence[str], rows: Iterable[Sequence[object]], *, header: bool = True) -> str:
    head = "<tr>" + "".join(f"<th>{_text(h)}</th>" for h in headers) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(_cell(value) for value in row) + "</tr>" for row in rows)
    if not body:
        body = f'<tr><td class="info" colspan="{len(headers)}">none</td></tr>'
    return f"<table>{head}{body}</table>"


def _cell(value: object) -> str:
    if isinstance(value, _Markup):
        return f"<td>{value.html}</td>"
    if isinstance(value, bool):
        value = _yes(value)
    elif isinstance(value, list | tuple):
        value = ", ".join(str(item) for item in value)
    return f"<td>{_text('-' if value is None or value == '' else value)}</td>"


class _Markup:
    """Already-escaped HTML for a cell (status words with their colour)."""

    def __init__(self, html: str) -> None:
        self.html = html


def _status(ok: bool) -> _Markup:
    return _Markup('<span class="ok">ok</span>' if ok else '<span class="failing">failing</span>')


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _text(value: object) -> str:
    return escape(str(value), quote=True)

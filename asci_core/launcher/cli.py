"""`asci sessions | nodes | environments`: the sessions API of the running `asci serve`, with the admin token.

The admin token acts for any user: `--user` names the one a call acts as
(sessions create defaults to the login name running `asci`). Expected failures
end in one line: the service not answering exits 1, a refusal exits 2 for a 4xx
answer (the request as stated cannot be done) and 1 for a 5xx one.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import getpass
import json
from typing import Any

import requests

from asci_core.errors import EXIT_FAILED, EXIT_USAGE, AsciError

from .api_tokens import ACT_AS_HEADER, PREFIX, admin_token_path, read_admin_token
from .sizes import format_size


class SessionsApiError(AsciError):
    """The service does not answer, or refused the request; the message says which."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED):
        super().__init__(message)
        self.exit_code = exit_code


def register(sub: argparse._SubParsersAction) -> None:
    sessions = sub.add_parser("sessions", help="researchers' desktop sessions, through the API of `asci serve`")
    sessions.set_defaults(error_prefix="asci sessions")
    actions = sessions.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = _action(actions, "list", "active sessions (all users', or one user's with --user)", cmd_sessions_list)
    p.add_argument("--user", help="only this user's sessions")
    p.add_argument("--all", action="store_true", help="stopped sessions too")
    p = _action(actions, "create", "start a session of ENVIRONMENT", cmd_sessions_create)
    p.add_argument("environment")
    p.add_argument("--user", help="the researcher it is for (default: your login name)")
    for name, func, text in (("show", cmd_sessions_show, "one session"),
                             ("connect", cmd_sessions_connect,
                              "a fresh one-time VNC password and the address to reach (printed: keep it private)"),
                             ("stop", cmd_sessions_stop, "stop and remove a session")):
        p = _action(actions, name, text, func)
        p.add_argument("id")
        p.add_argument("--user", help="act as this user (their session only)")

    nodes = sub.add_parser("nodes", help="the engines that run sessions: capacity, reservations and measured use")
    nodes.set_defaults(error_prefix="asci nodes")
    actions = nodes.add_subparsers(dest="action", required=True, metavar="ACTION")
    _action(actions, "list", "every node", cmd_nodes_list)
    _action(actions, "show", "one node", cmd_nodes_show).add_argument("name")

    envs = sub.add_parser("environments", help="the environments researchers can start")
    envs.set_defaults(error_prefix="asci environments")
    actions = envs.add_subparsers(dest="action", required=True, metavar="ACTION")
    _action(actions, "list", "every environment, or those --user may start",
            cmd_environments_list).add_argument("--user", help="only what this user may start")


def _action(actions: Any, name: str, text: str, func: Any) -> argparse.ArgumentParser:
    p = actions.add_parser(name, help=text)
    p.add_argument("--url", help="service address (default: http://server.host:server.port)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=func)
    return p


def _call(args: argparse.Namespace, method: str, path: str, user: str | None = None, **kw: Any) -> Any:
    config = args.config_obj
    base = (args.url or f"http://{config.server.host}:{config.server.port}").rstrip("/")
    headers = {"Authorization": f"Bearer {read_admin_token(admin_token_path(config))}"}
    if user:
        headers[ACT_AS_HEADER] = user
    try:
        resp = requests.request(method, base + PREFIX + path, headers=headers, timeout=120, **kw)
    except requests.ConnectionError:
        raise SessionsApiError(f"no ASCI service answers at {base} (is `asci serve` running?)") from None
    except requests.Timeout:
        raise SessionsApiError(f"the ASCI service at {base} did not answer in time") from None
    try:
        body = resp.json()
    except ValueError:
        body = None
    if resp.status_code >= 400:
        reason = body.get("reason") if isinstance(body, dict) else None
        raise SessionsApiError(f"{reason or resp.reason} (HTTP {resp.status_code})",
                       EXIT_USAGE if resp.status_code < 500 else EXIT_FAILED)
    if not isinstance(body, dict):
        raise SessionsApiError(f"the service at {base} answered with something other than JSON (HTTP {resp.status_code})")
    return body


def _when(ts: float | None) -> str:
    return "-" if not ts else _dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def _print(data: Any) -> None:
    print(json.dumps(data, indent=2))


def _session_lines(s: dict[str, Any]) -> None:
    print(f"session {s['id']}: {s['environment']} for {s['user']} on {s['node']}")
    print(f"  state      {s['state']}" + (f" ({s['reason']})" if s["reason"] else ""))
    print(f"  resources  {s['cpus']:g} CPUs, {format_size(s['memory'])}, {s['gpus']} GPUs")
    print(f"  created    {_when(s['created_at'])}  last activity {_when(s['last_activity'])}")
    print(f"  container  {s['container_id'][:12] or '-'}")


def cmd_sessions_list(args: argparse.Namespace) -> int:
    params = {"include_stopped": "true" if args.all else "false"}
    sessions = _call(args, "GET", "/sessions", args.user, params=params)["sessions"]
    if args.json:
        _print(sessions)
        return 0
    rows = [("ID", "USER", "ENVIRONMENT", "NODE", "STATE", "CREATED")]
    rows += [(s["id"], s["user"], s["environment"], s["node"], s["state"], _when(s["created_at"])) for s in sessions]
    _table(rows)
    return 0


def cmd_sessions_create(args: argparse.Namespace) -> int:
    session = _call(args, "POST", "/sessions", args.user or getpass.getuser(), json={"environment": args.environment})
    _print(session) if args.json else _session_lines(session)
    return 0


def cmd_sessions_show(args: argparse.Namespace) -> int:
    session = _call(args, "GET", f"/sessions/{args.id}", args.user)
    _print(session) if args.json else _session_lines(session)
    return 0


def cmd_sessions_stop(args: argparse.Namespace) -> int:
    session = _call(args, "DELETE", f"/sessions/{args.id}", args.user)
    _print(session) if args.json else print(f"session {session['id']}: {session['state']}")
    return 0


def cmd_sessions_connect(args: argparse.Namespace) -> int:
    connection = _call(args, "POST", f"/sessions/{args.id}/connect", args.user)
    if args.json:
        _print(connection)
    else:
        print(f"address   {connection['address']}:{connection['port']} (node {connection['node']})")
        print(f"password  {connection['password']} (one-time)")
    return 0


def _node_row(n: dict[str, Any]) -> tuple[str, ...]:
    state = "up" if n["healthy"] else f"DOWN ({n['down_reason']})"
    # Reserved/capacity, then what the node's containers were measured to use ("-": no recent measurement).
    measured = n.get("measured_at") is not None
    return (n["name"], state, f"{n['reserved_cpus']:g}/{n['cpus']:g}",
            f"{format_size(n['reserved_memory'])}/{format_size(n['memory'])}", f"{n['reserved_gpus']}/{n['gpus']}",
            f"{n['measured_cpus']:.2f}" if measured else "-",
            format_size(n["measured_memory"]) if measured else "-",
            str(n["sessions"]), ",".join(n.get("backends") or ()) or "-", _render_free(n),
            ",".join(f"{k}={v}" for k, v in sorted(n["labels"].items())) or "-")


def _render_free(n: dict[str, Any]) -> str:
    """Render devices a shared egl session could still be given, of all the node has; "-" for none."""
    total = n.get("render_devices") or 0
    return f"{n.get('render_devices_free') or 0}/{total}" if total else "-"


NODE_HEADER = ("NODE", "STATE", "CPUS", "MEMORY", "GPUS", "CPU-USED", "MEM-USED", "SESSIONS", "GL", "RENDER-FREE",
               "LABELS")


def cmd_nodes_list(args: argparse.Namespace) -> int:
    nodes = _call(args, "GET", "/nodes")["nodes"]
    if args.json:
        _print(nodes)
        return 0
    _table([NODE_HEADER, *(_node_row(n) for n in nodes)])
    return 0


def cmd_nodes_show(args: argparse.Namespace) -> int:
    node = _call(args, "GET", f"/nodes/{requests.utils.quote(args.name, safe='')}")
    _print(node) if args.json else _table([NODE_HEADER, _node_row(node)])
    return 0


def cmd_environments_list(args: argparse.Namespace) -> int:
    environments = _call(args, "GET", "/environments", args.user)["environments"]
    if args.json:
        _print(environments)
        return 0
    rows = [("NAME", "TITLE", "CPUS", "MEMORY", "GPUS", "IMAGE")]
    rows += [(e["name"], e["title"], f"{e['cpus']:g}", format_size(e["memory"]), str(e["gpus"]), e["image"])
             for e in environments]
    _table(rows)
    return 0

"""vswitchctl: the operator's command line for vswitchd.

Configuration commands in the style of ovs-vsctl, flow commands in the style
of ovs-ofctl (same flow syntax).  Every read command takes --format json.
Errors are one line on stderr and a non-zero exit status.
"""

from __future__ import annotations

import json
import os
import socket
import sys

import click

from vswitch.config import DEFAULT_STATE_DIR

TIMEOUT_S = 30.0


class CtlError(click.ClickException):
    def show(self, file=None) -> None:
        click.echo(f"vswitchctl: {self.message}", err=True)


def call(ctx: click.Context, method: str, **params):
    """One JSON-RPC request to the daemon; returns the result."""
    path = ctx.obj["socket"]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT_S)
    try:
        s.connect(path)
    except OSError as e:
        raise CtlError(f"cannot reach vswitchd at {path}: {e.strerror or e}") from None
    try:
        req = {"jsonrpc": "2.0", "id": 1, "method": method,
               "params": {k: v for k, v in params.items() if v is not None}}
        s.sendall((json.dumps(req) + "\n").encode())
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(1 << 16)
            if not chunk:
                raise CtlError("vswitchd closed the connection")
            buf += chunk
    except OSError as e:
        raise CtlError(f"talking to vswitchd: {e}") from None
    finally:
        s.close()
    reply = json.loads(buf)
    if "error" in reply:
        raise CtlError(reply["error"]["message"])
    return reply["result"]


def out(ctx: click.Context, result, text=None) -> None:
    """Print result as JSON or through the text formatter."""
    if ctx.obj["format"] == "json":
        click.echo(json.dumps(result, indent=2, sort_keys=True))
    elif text is not None:
        for line in text(result):
            click.echo(line)
    elif result is not None:
        click.echo(result)


def kv(items: tuple[str, ...], what: str) -> dict:
    d = {}
    for item in items:
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise CtlError(f"{what} must be KEY=VALUE, not {item!r}")
        d[k] = v
    return d


def int_list(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise CtlError(f"bad VLAN list {text!r} (expected e.g. 10,20,30)") from None


def _set_format(ctx: click.Context, _param, value: str | None) -> None:
    if value is not None:
        ctx.obj["format"] = value


# Read commands take --format after the command name too (`show --format json`).
format_option = click.option("--format", type=click.Choice(["text", "json"]), default=None,
                             expose_value=False, callback=_set_format,
                             help="output format (default: the global --format)")


@click.group()
@click.option("--socket", "sock", help="vswitchd control socket")
@click.option("--state-dir", default=lambda: os.environ.get("VSWITCH_STATE_DIR",
                                                            DEFAULT_STATE_DIR),
              show_default="/var/lib/vswitch")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.pass_context
def main(ctx: click.Context, sock: str | None, state_dir: str, fmt: str) -> None:
    """Configure and inspect vswitchd."""
    ctx.obj = {"socket": sock or os.path.join(state_dir, "vswitchd.sock"), "format": fmt}


# --- configuration ----------------------------------------------------------------

@main.command("add-br")
@click.argument("bridge")
@click.option("--fail-mode", type=click.Choice(["standalone", "secure"]), default="standalone")
@click.option("--threads", type=click.IntRange(1, 64), default=1, help="poll threads")
@click.option("--may-exist", is_flag=True)
@click.pass_context
def add_br(ctx, bridge, fail_mode, threads, may_exist):
    """Create a bridge (standalone: a learning switch until flows say otherwise;
    secure: no flows)."""
    call(ctx, "add-br", bridge=bridge, fail_mode=fail_mode, threads=threads,
         may_exist=may_exist)


@main.command("del-br")
@click.argument("bridge")
@click.option("--if-exists", is_flag=True)
@click.pass_context
def del_br(ctx, bridge, if_exists):
    """Delete a bridge and its ports."""
    call(ctx, "del-br", bridge=bridge, if_exists=if_exists)


@main.command("list-br")
@format_option
@click.pass_context
def list_br(ctx):
    out(ctx, call(ctx, "list-br"), lambda r: r)


@main.command("add-port")
@format_option
@click.argument("bridge")
@click.argument("port")
@click.option("--type", "ptype", type=click.Choice(["system", "tap", "internal", "patch",
                                                    "afxdp", "vxlan"]), default="system")
@click.option("--tag", type=click.IntRange(0, 4095), help="access VLAN")
@click.option("--trunks", help="trunk VLANs, e.g. 10,20")
@click.option("--option", "options", multiple=True, help="KEY=VALUE, e.g. peer=p1")
@click.option("--external-id", "external_ids", multiple=True, help="KEY=VALUE")
@click.option("--ofport", type=click.IntRange(1, 0xFEFF))
@click.option("--may-exist", is_flag=True)
@click.pass_context
def add_port(ctx, bridge, port, ptype, tag, trunks, options, external_ids, ofport, may_exist):
    """Add a port: system (existing device), tap, internal, patch, afxdp,
    vxlan (--option remote_ip=A.B.C.D --option key=VNI|flow ...)."""
    n = call(ctx, "add-port", bridge=bridge, port=port, type=ptype, tag=tag,
             trunks=int_list(trunks), options=kv(options, "--option"),
             external_ids=kv(external_ids, "--external-id"), ofport=ofport,
             may_exist=may_exist)
    out(ctx, {"ofport": n}, lambda r: [f"{port}: ofport {r['ofport']}"])


@main.command("del-port")
@click.argument("args", nargs=-1, required=True)
@click.option("--if-exists", is_flag=True)
@click.pass_context
def del_port(ctx, args, if_exists):
    """del-port [BRIDGE] PORT"""
    if len(args) > 2:
        raise CtlError("usage: del-port [BRIDGE] PORT")
    bridge, port = (None, args[0]) if len(args) == 1 else args
    call(ctx, "del-port", port=port, bridge=bridge, if_exists=if_exists)


@main.command("list-ports")
@format_option
@click.argument("bridge")
@click.pass_context
def list_ports(ctx, bridge):
    out(ctx, call(ctx, "list-ports", bridge=bridge), lambda r: r)


def _show_text(bridges):
    for b in bridges:
        yield f'Bridge {b["name"]}'
        yield f'    fail_mode: {b["fail_mode"]}'
        status = {c["target"]: c for c in (b.get("openflow") or {}).get("controllers", [])}
        for c in b["controllers"]:
            st = status.get(c)
            yield f"    Controller \"{c}\"" + (f" ({_target_state(st)})" if st else "")
        local = b.get("local") or {}
        if local:
            yield f'    Port {b["name"]} (ofport LOCAL, internal, link {local.get("link")})'
        for p in b["ports"]:
            st = p["state"]
            extra = []
            if p["tag"] is not None:
                extra.append(f'tag {p["tag"]}')
            if p["trunks"]:
                extra.append("trunks " + ",".join(map(str, p["trunks"])))
            if st:
                extra.append(f'link {st.get("link")}, mtu {st.get("mtu")}')
            if p["error"]:
                extra.append(f'error: {p["error"]}')
            yield f'    Port {p["name"]} (ofport {p["ofport"]}, {p["type"]}' + \
                "".join(f", {e}" for e in extra) + ")"
            for k, v in sorted(p["options"].items()):
                yield f"        {k}={v}"


@main.command()
@format_option
@click.pass_context
def show(ctx):
    """Bridges, ports, their state."""
    out(ctx, call(ctx, "show"), _show_text)


def _target_state(t: dict) -> str:
    conns = t["connections"]
    if conns and t["target"].startswith(("ptcp:", "punix:")):
        return f"listening, {len(conns)} connected"
    if conns:
        return f"connected, role {conns[0].get('role', '?')}"
    return t["state"] + (f": {t['last_error']}" if t["last_error"] else "")


@main.command("set-controller")
@click.argument("bridge")
@click.argument("targets", nargs=-1, required=True)
@click.pass_context
def set_controller(ctx, bridge, targets):
    """Set the OpenFlow controllers and listeners of BRIDGE: tcp:IP:PORT,
    ssl:IP:PORT, unix:PATH (dialled) and ptcp:PORT[:IP], punix:PATH (listened
    on; ptcp binds 127.0.0.1 unless IP is given)."""
    call(ctx, "set-controller", bridge=bridge, targets=list(targets))


@main.command("del-controller")
@click.argument("bridge")
@click.pass_context
def del_controller(ctx, bridge):
    """Remove every controller and listener of BRIDGE."""
    call(ctx, "del-controller", bridge=bridge)


@main.command("get-controller")
@format_option
@click.argument("bridge")
@click.pass_context
def get_controller(ctx, bridge):
    out(ctx, call(ctx, "get-controller", bridge=bridge), lambda r: r)


@main.command("controller-status")
@format_option
@click.argument("bridge")
@click.pass_context
def controller_status(ctx, bridge):
    """OpenFlow connections of BRIDGE, their roles and counters."""
    def text(r):
        yield f'datapath_id {r.get("datapath_id", "?")}, probe interval ' \
              f'{r.get("probe_interval_s", "?")} s'
        for t in r["controllers"]:
            yield f'{t["target"]}: {t["state"]}' + \
                (f' ({t["last_error"]})' if t["last_error"] else "") + \
                f', {t["connects"]} connects, {t["disconnects"]} disconnects'
            for c in t["connections"]:
                yield f'    {c["peer"]}: role {c.get("role", "?")}, up {c["connected_s"]} s, ' \
                      f'rx {c["rx_msgs"]} tx {c["tx_msgs"]} msgs, errors sent ' \
                      f'{c["rx_errors"]}, async dropped {c["async_dropped"]}'
        for k, v in sorted(r["counters"].items()):
            yield f"{k}: {v}"
    out(ctx, call(ctx, "openflow-status", bridge=bridge), text)


@main.command("set-ssl")
@click.argument("private_key")
@click.argument("certificate")
@click.argument("ca_cert")
@click.pass_context
def set_ssl(ctx, private_key, certificate, ca_cert):
    """Key, certificate and CA certificate for ssl: controllers (PEM files)."""
    call(ctx, "set-ssl", private_key=os.path.abspath(private_key),
         certificate=os.path.abspath(certificate), ca_cert=os.path.abspath(ca_cert))


@main.command("get-ssl")
@format_option
@click.pass_context
def get_ssl(ctx):
    out(ctx, call(ctx, "get-ssl"),
        lambda r: [f"{k}: {v}" for k, v in sorted(r.items())] if r else ["(no SSL set)"])


@main.command("del-ssl")
@click.pass_context
def del_ssl(ctx):
    call(ctx, "del-ssl")


@main.command("set-fail-mode")
@click.argument("bridge")
@click.argument("mode", type=click.Choice(["standalone", "secure"]))
@click.pass_context
def set_fail_mode(ctx, bridge, mode):
    call(ctx, "set-fail-mode", bridge=bridge, mode=mode)


@main.command()
@format_option
@click.argument("kind", type=click.Choice(["bridge", "port"]))
@click.argument("name")
@click.argument("key", required=False)
@click.pass_context
def get(ctx, kind, name, key):
    """get bridge|port NAME [COLUMN]"""
    out(ctx, call(ctx, "get", kind=kind, name=name, key=key),
        lambda r: [json.dumps(r, sort_keys=True)])


@main.command("set")
@click.argument("kind", type=click.Choice(["bridge", "port"]))
@click.argument("name")
@click.argument("assignments", nargs=-1, required=True)
@click.pass_context
def set_(ctx, kind, name, assignments):
    """set bridge|port NAME COLUMN=VALUE ... (options:KEY=VALUE, external_ids:KEY=VALUE,
    tag=N, trunks=10,20, fail_mode=secure)"""
    maps: dict[str, dict] = {}
    for a in assignments:
        col, sep, value = a.partition("=")
        if not sep:
            raise CtlError(f"expected COLUMN=VALUE, not {a!r}")
        if ":" in col:
            col, _, k = col.partition(":")
            maps.setdefault(col, {})[k] = value
        elif col == "trunks":
            call(ctx, "set", kind=kind, name=name, key=col, value=int_list(value))
        elif col == "tag":
            call(ctx, "set", kind=kind, name=name, key=col, value=value or None)
        else:
            call(ctx, "set", kind=kind, name=name, key=col, value=value)
    for col, m in maps.items():
        call(ctx, "set", kind=kind, name=name, key=col, value=m)


# --- flows (ovs-ofctl style) ----------------------------------------------------------

@main.command("add-flow")
@click.argument("bridge")
@click.argument("flow")
@click.pass_context
def add_flow(ctx, bridge, flow):
    """add-flow BRIDGE 'in_port=1,actions=output:2'"""
    call(ctx, "add-flow", bridge=bridge, flow=flow)


@main.command("add-flows")
@format_option
@click.argument("bridge")
@click.argument("file", type=click.File("r"))
@click.pass_context
def add_flows(ctx, bridge, file):
    """add-flows BRIDGE FILE (one flow per line, - for stdin); all or nothing."""
    n = call(ctx, "add-flows", bridge=bridge, flows=file.read().splitlines())
    out(ctx, {"added": n}, lambda r: [f"added {r['added']} flows"])


@main.command("mod-flows")
@click.argument("bridge")
@click.argument("flow")
@click.option("--strict", is_flag=True)
@click.pass_context
def mod_flows(ctx, bridge, flow, strict):
    call(ctx, "mod-flows", bridge=bridge, flow=flow, strict=strict)


@main.command("del-flows")
@click.argument("bridge")
@click.argument("flow", required=False, default="")
@click.option("--strict", is_flag=True)
@click.pass_context
def del_flows(ctx, bridge, flow, strict):
    call(ctx, "del-flows", bridge=bridge, flow=flow, strict=strict)


@main.command("dump-flows")
@format_option
@click.argument("bridge")
@click.argument("flow", required=False, default="")
@click.option("--sort", "sort_key", help="ascending by priority|table|cookie|packet_count|...")
@click.option("--rsort", "rsort_key", help="descending")
@click.pass_context
def dump_flows(ctx, bridge, flow, sort_key, rsort_key):
    """Flows with counters and durations, as ovs-ofctl dump-flows prints them."""
    sort = sort_key or (f"-{rsort_key}" if rsort_key else None)
    out(ctx, call(ctx, "dump-flows", bridge=bridge, flow=flow, sort=sort),
        lambda r: [e["text"] for e in r])


@main.command("dump-aggregate")
@format_option
@click.argument("bridge")
@click.argument("flow", required=False, default="")
@click.pass_context
def dump_aggregate(ctx, bridge, flow):
    out(ctx, call(ctx, "dump-aggregate", bridge=bridge, flow=flow),
        lambda r: [f"packet_count={r['packet_count']} byte_count={r['byte_count']} "
                   f"flow_count={r['flow_count']}"])


def _ports_text(rows):
    yield f"port stats: {len(rows)} ports"
    for r in rows:
        yield (f"  port {r['name']} ({r['port']}): rx pkts={r['rx_packets']}, "
               f"bytes={r['rx_bytes']}, drop={r['rx_dropped']}, errs={r['rx_errors']}")
        yield (f"{'':>{len(str(r['name'])) + len(str(r['port'])) + 10}}tx pkts={r['tx_packets']}, "
               f"bytes={r['tx_bytes']}, drop={r['tx_dropped']}, errs={r['tx_errors']}")


@main.command("dump-ports")
@format_option
@click.argument("bridge")
@click.pass_context
def dump_ports(ctx, bridge):
    out(ctx, call(ctx, "dump-ports", bridge=bridge), _ports_text)


@main.command("dump-tables")
@format_option
@click.argument("bridge")
@click.pass_context
def dump_tables(ctx, bridge):
    out(ctx, call(ctx, "dump-tables", bridge=bridge),
        lambda r: [f"  table {t['table_id']}: active={t['active_count']}, "
                   f"lookup={t['lookup_count']}, matched={t['matched_count']}, "
                   f"subtables={t['subtables']}" for t in r])


def _mod_command(kind: str, command: str, doc: str):
    """add-group/mod-group/del-groups and the meter equivalents."""
    def cmd(ctx, bridge, spec):
        call(ctx, f"{kind}-mod", bridge=bridge, command=command, **{kind: spec or ""})
    cmd.__doc__ = doc
    name = {"add": f"add-{kind}", "mod": f"mod-{kind}", "del": f"del-{kind}s"}[command]
    required = command != "del"
    main.command(name)(click.pass_context(
        click.argument("bridge")(
            click.argument("spec", required=required, default="")(cmd))))


_mod_command("group", "add", "add-group BRIDGE 'group_id=1,type=all,bucket=output:1,...'")
_mod_command("group", "mod", "mod-group BRIDGE 'group_id=1,type=select,bucket=weight:3,...'")
_mod_command("group", "del", "del-groups BRIDGE [group_id=N] (all groups without one)")
_mod_command("meter", "add", "add-meter BRIDGE 'meter=1,kbps,band=type=drop,rate=1000'")
_mod_command("meter", "mod", "mod-meter BRIDGE 'meter=1,pktps,band=type=drop,rate=100'")
_mod_command("meter", "del", "del-meters BRIDGE [meter=N] (all meters without one)")


@main.command("dump-groups")
@format_option
@click.argument("bridge")
@click.pass_context
def dump_groups(ctx, bridge):
    """Groups as ovs-ofctl dump-groups prints them, with their counters."""
    out(ctx, call(ctx, "dump-groups", bridge=bridge),
        lambda r: [f" {g['text']} (ref_count={g['ref_count']},packet_count={g['packet_count']},"
                   f"byte_count={g['byte_count']})" for g in r])


@main.command("dump-meters")
@format_option
@click.argument("bridge")
@click.pass_context
def dump_meters(ctx, bridge):
    """Meters with their bands and counters."""
    out(ctx, call(ctx, "dump-meters", bridge=bridge),
        lambda r: [f" {m['text']} (flow_count={m['flow_count']},packet_in_count="
                   f"{m['packet_in_count']},byte_in_count={m['byte_in_count']})" for m in r])


@main.command("fdb-show")
@format_option
@click.argument("bridge")
@click.pass_context
def fdb_show(ctx, bridge):
    """Learned MAC addresses (NORMAL)."""
    out(ctx, call(ctx, "fdb-show", bridge=bridge),
        lambda r: [" port  VLAN  MAC                Age"] +
        [f"{e['port']:>5}  {e['vlan']:>4}  {e['mac']}  {e['age_s']:>3}" for e in r])


def _trace_text(r):
    for s in r["steps"]:
        yield f"{s['table']}. " + (s["rule"] or "No match: drop")
    yield ""
    yield f"Megaflow: {r['megaflow']}"
    outs = ", ".join(o["port"] for o in r["outputs"]) or "drop"
    yield f"Datapath actions: {outs}" + (f" (+{len(r['upcalls'])} to controller)"
                                         if r["upcalls"] else "")


@main.command()
@format_option
@click.argument("bridge")
@click.argument("packet")
@click.pass_context
def trace(ctx, bridge, packet):
    """trace BRIDGE 'in_port=1,tcp,nw_dst=10.0.0.2,tp_dst=80'"""
    out(ctx, call(ctx, "trace", bridge=bridge, packet=packet), _trace_text)


@main.command("dpif-stats")
@format_option
@click.argument("bridge")
@click.pass_context
def dpif_stats(ctx, bridge):
    """Per-thread fast-path counters (cache hits, misses, upcalls, ns/packet)."""
    out(ctx, call(ctx, "dpif-stats", bridge=bridge),
        lambda r: [f"{k}: {v}" for k, v in r["datapath"].items()] +
        [f"thread {i}: " + ", ".join(f"{k}={v}" for k, v in t.items())
         for i, t in enumerate(r["threads"])])


def _tunnels_text(r):
    for t in r:
        u = t["underlay"]
        c = t["counters"]
        yield (f"{t['bridge']} {t['name']} (ofport {t['ofport']}): vxlan remote {t['remote_ip']}"
               f" local {t['local_ip']} key {t['key']} dst_port {t['dst_port']},"
               f" link {t['link']}, mtu {t['mtu']}")
        if u.get("flow"):
            for r in t["remotes"]:
                ru = u["remotes"].get(r["remote_ip"], {})
                where = (f"via {ru['egress']} next hop {ru['next_hop']}" if "egress" in ru
                         else f"unresolved ({ru.get('why', 'not resolved yet')})")
                yield f"    remote {r['remote_ip']}: {where}, tx_packets={r['tx_packets']}"
        elif u.get("resolved"):
            yield (f"    underlay: via {u['egress']} next hop {u['next_hop']} "
                   f"({u['next_hop_mac']}) from {u['src_ip']}, MTU {u['underlay_mtu']}")
        else:
            yield f"    underlay: unresolved ({u.get('why')})"
        yield "    " + ", ".join(f"{k}={v}" for k, v in c.items()
                               if k not in ("resolved", "ifindex", "underlay_mtu"))


@main.command("tunnel-show")
@format_option
@click.argument("bridge", required=False)
@click.pass_context
def tunnel_show(ctx, bridge):
    """Tunnel ports: remote, underlay route, effective MTU, per-remote counters."""
    out(ctx, call(ctx, "tunnel-show", bridge=bridge), _tunnels_text)


# --- sFlow ----------------------------------------------------------------------------

@main.command("sflow-set")
@format_option
@click.argument("bridge")
@click.option("--collector", "collectors", multiple=True, required=True,
              help="HOST[:PORT] (port 6343 by default); repeat for several")
@click.option("--agent", help="agent address: an IP address or an interface name "
              "(default: the source address towards the first collector)")
@click.option("--sampling", type=click.IntRange(0, 2**32 - 1), default=400, show_default=True,
              help="sample 1 in N packets (0: counters only)")
@click.option("--polling", type=click.IntRange(0, 86400), default=30, show_default=True,
              help="seconds between counter samples (0: none)")
@click.option("--header", type=click.IntRange(14, 256), default=128, show_default=True,
              help="bytes of each sampled packet to export")
@click.pass_context
def sflow_set(ctx, bridge, collectors, agent, sampling, polling, header):
    """Export sFlow from BRIDGE to one or more collectors."""
    settings = {"collectors": list(collectors), "sampling": sampling, "polling": polling,
                "header": header}
    if agent:
        settings["agent"] = agent
    out(ctx, call(ctx, "sflow-set", bridge=bridge, settings=settings),
        lambda r: [])


def _sflow_text(r):
    st = r["settings"]
    if st is None:
        yield "sFlow: off"
        return
    yield f"collectors: {', '.join(st['collectors'])}"
    yield f"agent: {st['agent'] or '(route to the first collector)'}"
    yield f"sampling: 1 in {st['sampling']}" if st["sampling"] else "sampling: off"
    yield f"polling: {st['polling']} s" if st["polling"] else "polling: off"
    yield f"header: {st['header']} bytes"
    for k, v in (r["status"] or {}).items():
        yield f"{k}: {v}"


@main.command("sflow-show")
@format_option
@click.argument("bridge")
@click.pass_context
def sflow_show(ctx, bridge):
    """BRIDGE's sFlow settings and the agent's counters."""
    out(ctx, call(ctx, "sflow-show", bridge=bridge), _sflow_text)


@main.command("sflow-del")
@click.argument("bridge")
@click.option("--if-exists", is_flag=True)
@click.pass_context
def sflow_del(ctx, bridge, if_exists):
    """Stop exporting sFlow from BRIDGE."""
    call(ctx, "sflow-del", bridge=bridge, if_exists=if_exists or None)


# SR-IOV commands live in their own module; imported here, after call/out exist.
from vswitch.sriov.cli import vf as _vf  # noqa: E402

main.add_command(_vf)


if __name__ == "__main__":
    sys.exit(main())

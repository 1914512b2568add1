"""`vswitchctl vf ...`: SR-IOV commands (registered on vswitchctl's main group by
vswitch.cli; they use its `call` and `out`)."""

from __future__ import annotations

import click

ON_OFF = click.Choice(["on", "off"])


# vswitch.cli imports this module to register `vf`: its helpers are looked up when a
# command runs, not at import (python -m vswitch.cli runs it as __main__).
def call(ctx: click.Context, method: str, **params):
    from vswitch import cli
    return cli.call(ctx, method, **params)


def out(ctx: click.Context, result, text=None) -> None:
    from vswitch import cli
    cli.out(ctx, result, text)


def _set_format(ctx: click.Context, _param, value: str | None) -> None:
    if value is not None:
        ctx.obj["format"] = value


format_option = click.option("--format", type=click.Choice(["text", "json"]), default=None,
                             expose_value=False, callback=_set_format,
                             help="output format (default: the global --format)")


def _on(value: str | None) -> bool | None:
    return None if value is None else value == "on"


def _rate(vf: dict) -> str:
    c = vf["config"]
    return f"rate {c['min_tx_rate']}-{c['max_tx_rate']}Mbps" if c else ""


def _vf_line(vf: dict) -> str:
    parts = [f"  vf {vf['index']:<3} {vf['pci']}", vf["driver"] or "(no driver)"]
    if vf["netdev"]:
        parts.append(vf["netdev"])
    if vf["iommu_group"] is not None:
        parts.append(f"iommu_group {vf['iommu_group']}")
    if vf["representor"]:
        parts.append(f"representor {vf['representor']}")
    c = vf["config"]
    if c:
        flag = {True: "on", False: "off", None: "n/a"}
        parts.append(f"mac {c['mac']} vlan {c['vlan']} qos {c['qos']} {_rate(vf)} "
                     f"spoofchk {flag[c['spoofchk']]} trust {flag[c['trust']]} "
                     f"link-state {c['link_state']}")
    a = vf["assignment"]
    if a:
        parts.append(f"-> VM {a['vm_id']} ({a['state']}" + (f", pool {a['pool']})"
                                                             if a["pool"] else ")"))
    return "  ".join(parts)


def _list_text(r: dict):
    for pf in r["pfs"]:
        auto = {True: "on", False: "off", None: "n/a"}[pf["autoprobe"]]
        yield (f"{pf['netdev'] or '(no netdev)'}  {pf['pci']}  {pf['vendor']}:{pf['device']}  "
               f"{pf['driver'] or '(no driver)'}  numvfs {pf['numvfs']}/{pf['totalvfs']}  "
               f"autoprobe {auto}")
        if pf["config_error"]:
            yield f"  (VF settings unreadable: {pf['config_error']})"
        for vf in pf["vfs"]:
            yield _vf_line(vf)
    lost = [a for a in r["assignments"] if a["state"] != "active" or a["error"]]
    for a in lost:
        yield f"VM {a['vm_id']}: VF {a['vf_pci']} {a['state']}: {a['error'] or ''}"


def config_options(fn):
    for opt in reversed([
            click.option("--mac", help="VF MAC address"),
            click.option("--vlan", type=click.IntRange(0, 4095), help="VF VLAN (0: none)"),
            click.option("--qos", type=click.IntRange(0, 7), help="802.1p priority"),
            click.option("--min-tx-rate", type=click.IntRange(0, 0xFFFFFFFF), help="Mbps"),
            click.option("--max-tx-rate", type=click.IntRange(0, 0xFFFFFFFF), help="Mbps"),
            click.option("--spoofchk", type=ON_OFF),
            click.option("--trust", type=ON_OFF),
            click.option("--link-state", type=click.Choice(["auto", "enable", "disable"]))]):
        fn = opt(fn)
    return fn


def _settings(kw: dict) -> dict:
    s = {k: kw.pop(k) for k in ("mac", "vlan", "qos", "min_tx_rate", "max_tx_rate",
                                "link_state")}
    s["spoofchk"] = _on(kw.pop("spoofchk"))
    s["trust"] = _on(kw.pop("trust"))
    return {k: v for k, v in s.items() if v is not None}


@click.group()
def vf():
    """SR-IOV physical and virtual functions."""


@vf.command("list")
@format_option
@click.pass_context
def list_(ctx):
    """PFs, their VFs (driver, netdev, IOMMU group, settings) and assignments."""
    out(ctx, call(ctx, "vf-list"), _list_text)


@vf.command("set-numvfs")
@format_option
@click.argument("pf")
@click.argument("numvfs", type=click.IntRange(0, 65535))
@click.option("--autoprobe/--no-autoprobe", default=None,
              help="bind new VFs to their driver (default: leave as is)")
@click.pass_context
def set_numvfs(ctx, pf, numvfs, autoprobe):
    """Set the number of VFs of PF (netdev name or PCI address)."""
    out(ctx, call(ctx, "vf-set-numvfs", pf=pf, numvfs=numvfs, autoprobe=autoprobe),
        lambda r: [f"{r['netdev'] or r['pci']}: numvfs {r['numvfs']}/{r['totalvfs']}"])


@vf.command("config")
@format_option
@click.argument("vf_spec", metavar="VF")
@config_options
@click.pass_context
def config(ctx, vf_spec, **kw):
    """Set VF settings; VF is PF#INDEX (ens1f0#2) or the VF's PCI address."""
    settings = _settings(kw)
    if not settings:
        raise click.UsageError("nothing to set (see vswitchctl vf config --help)")
    out(ctx, call(ctx, "vf-config", vf=vf_spec, settings=settings),
        lambda r: [" ".join(f"{k} {v}" for k, v in r.items())])


def _assignment_text(a: dict):
    where = f" (representor {a['port']} on {a['bridge']})" if a.get("bridge") else ""
    yield (f"VF {a['vf_pci']} ({a['pf_name']}#{a['vf_index']}) -> VM {a['vm_id']}: "
           f"{a['state']}{where}")


@vf.command("assign")
@format_option
@click.argument("vm_id")
@click.option("--pool", help="take a free VF from this pool")
@click.option("--vf", "vf_spec", help="this VF (PF#INDEX or PCI address)")
@click.option("--vfio", is_flag=True, help="bind the VF to vfio-pci for passthrough")
@click.option("--bridge", help="add the VF's representor (switchdev) to this bridge")
@config_options
@click.pass_context
def assign(ctx, vm_id, pool, vf_spec, vfio, bridge, **kw):
    """Give VM_ID a VF with the given settings (restored on release)."""
    out(ctx, call(ctx, "vf-assign", vm_id=vm_id, pool=pool, vf=vf_spec,
                  config=_settings(kw), vfio=vfio, bridge=bridge), _assignment_text)


@vf.command("release")
@format_option
@click.argument("vm_id", required=False)
@click.option("--vf", "vf_spec", help="release this VF only")
@click.pass_context
def release(ctx, vm_id, vf_spec):
    """Take back VM_ID's VFs (or one VF), restoring what the assignment changed."""
    out(ctx, call(ctx, "vf-release", vm_id=vm_id, vf=vf_spec),
        lambda r: [f"released VF {a['vf_pci']} from VM {a['vm_id']}"
                   + ("" if a["restored"] else " (VF gone, nothing to restore)") for a in r])


@vf.command("pools")
@format_option
@click.pass_context
def pools(ctx):
    """Pools, their selectors and their VFs (free or whose)."""
    def text(r):
        for p in r:
            sel = "  ".join(f"{k}={','.join(v)}" for k, v in sorted(p["selectors"].items()))
            yield f"{p['name']}: {p['free']} free of {p['total']}  {sel}"
            for v in p["vfs"]:
                yield f"  {v['pci']} {v['pf']}#{v['index']}  " + (
                    f"VM {v['vm_id']}" if v["vm_id"] else "free")
    out(ctx, call(ctx, "vf-pools"), text)


@vf.command("pool-add")
@click.argument("name")
@click.option("--vendor", "vendors", multiple=True, help="VF vendor id, e.g. 8086")
@click.option("--device", "devices", multiple=True, help="VF device id, e.g. 154c")
@click.option("--driver", "drivers", multiple=True, help="VF driver, e.g. iavf")
@click.option("--pf-name", "pf_names", multiple=True, help="PF name with VF ranges: ens1f0#0-3")
@click.option("--pci", "pci_addresses", multiple=True, help="VF PCI address")
@click.pass_context
def pool_add(ctx, name, vendors, devices, drivers, pf_names, pci_addresses):
    """Define (or redefine) a pool: VFs matching every selector given."""
    sel = {"vendors": list(vendors), "devices": list(devices), "drivers": list(drivers),
           "pfNames": list(pf_names), "pciAddresses": list(pci_addresses)}
    call(ctx, "vf-pool-add", name=name, selectors={k: v for k, v in sel.items() if v})


@vf.command("pool-del")
@click.argument("name")
@click.pass_context
def pool_del(ctx, name):
    """Remove a pool (refused while it has assigned VFs)."""
    call(ctx, "vf-pool-del", name=name)


@vf.command("reconcile")
@format_option
@click.argument("pf", required=False)
@click.pass_context
def reconcile(ctx, pf):
    """Check assignments against the hardware now (vswitchd also does on start and on
    PF link events)."""
    out(ctx, call(ctx, "vf-reconcile", pf=pf),
        lambda r: [f"VF {x['vf_pci']} (VM {x['vm_id']}): {x['action']}" for x in r])

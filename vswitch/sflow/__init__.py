"""sFlow v5: the switch's packet sampling and counters, and the Host sFlow
structures of the hypervisor and its VMs, exported by one agent per bridge.

    xdr.py      the wire format (sFlow v5 datagrams, samples, records)
    host.py     the host's own counters, read from /proc and /sys
    vm.py       VMs: who they are, and the provider interface for their stats
    agent.py    samplers, pollers, datagram packing, collectors
    service.py  the daemon's side: agents per bridge, the upcall reader
"""

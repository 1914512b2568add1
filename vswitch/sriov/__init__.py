"""SR-IOV: physical functions, their virtual functions, and VFs handed to VMs.

    sysfs.py     discovery, numvfs, autoprobe, driver binding (vfio-pci and back)
    netlink.py   VF settings through rtnetlink: requests built and replies parsed with
                 pyroute2's message classes, sent on a plain netlink socket
    pools.py     resource pools chosen by selectors (Kubernetes SR-IOV device plugin style)
    store.py     assignments in the daemon's SQLite database
    manager.py   what the daemon calls: list, set-numvfs, config, assign, release, reconcile

Every sysfs path is taken relative to a root (default /sys), so that tests run the same
code against a fake tree.
"""

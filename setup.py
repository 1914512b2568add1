"""vswitch: a software virtual switch with a C fast path (cffi, API mode)."""

from setuptools import find_packages, setup

setup(
    name="vswitch",
    version="0.1.0",
    description="Software virtual switch for hypervisor hosts, OpenFlow 1.3, C fast path",
    packages=find_packages(include=["vswitch", "vswitch.*"]),
    package_data={"vswitch._fastpath": ["*.h", "*.c"]},
    python_requires=">=3.11",
    setup_requires=["cffi>=1.15"],
    install_requires=["cffi>=1.15", "click>=8", "pyroute2>=0.7"],
    cffi_modules=["vswitch/_fastpath/build_core.py:ffibuilder"],
    entry_points={"console_scripts": ["vswitchd=vswitch.daemon:main",
                                      "vswitchctl=vswitch.cli:main"]},
    zip_safe=False,
)

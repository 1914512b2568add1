"""Build and drive tools/trafficgen.c (generator, counting sink, pinger).

The C program is compiled with gcc into a temporary directory the first
time it is needed (no Makefile, nothing left in the tree):

    tg = TrafficGen.build()                 # gcc -O2 ... -> /tmp/vs-trafficgen-XXXX/trafficgen
    with tg.sink("ns1", run_id=7) as sink:  # TPACKET_V3 ring, counts magic frames
        res = tg.generate("ns0", src_mac=..., dst_mac=..., src_ip=..., dst_ip=...,
                          flows=256, duration=5, run_id=7)
    sink.result                             # {"count": ..., "flows_seen": ..., ...}
    tg.ping("ns0", "10.77.0.2", count=200)  # RTTs in microseconds
    tg.hello("ns1", "02:5e:00:00:00:01")    # a learning switch learns this MAC
    tg.close()                              # removes the temporary directory

Every child process runs with a timeout and is killed if it overruns.
Command line: `python3 tools/trafficgen.py build` prints the binary's path.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

SOURCE = Path(__file__).resolve().with_name("trafficgen.c")
CFLAGS = ["-O2", "-g", "-Wall", "-Wextra", "-Wshadow", "-std=gnu11"]


class TrafficGenError(RuntimeError):
    """The C program failed or printed something unexpected."""


def _last_json(out: str, what: str) -> dict[str, Any]:
    for line in reversed(out.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise TrafficGenError(f"{what}: no result in output: {out[-500:]!r}")


class Sink:
    """A running `trafficgen sink`; stop() (or leaving the with block) makes it
    report.  The result is in `.result`."""

    def __init__(self, proc: subprocess.Popen, timeout: float) -> None:
        self.proc = proc
        self.timeout = timeout
        self.result: dict[str, Any] | None = None

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> dict[str, Any]:
        if self.result is not None:
            return self.result
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            out, err = self.proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            raise TrafficGenError("sink did not stop in time") from None
        if self.proc.returncode != 0:
            raise TrafficGenError(f"sink exited {self.proc.returncode}: {err.strip()}")
        self.result = _last_json(out, "sink")
        return self.result


class TrafficGen:
    """The compiled tools/trafficgen.c and helpers to run its commands."""

    def __init__(self, binary: Path, tmpdir: Path | None = None) -> None:
        self.binary = binary
        self._tmpdir = tmpdir

    @classmethod
    def build(cls, cc: str = "gcc") -> TrafficGen:
        tmp = Path(tempfile.mkdtemp(prefix="vs-trafficgen-"))
        binary = tmp / "trafficgen"
        cmd = [cc, *CFLAGS, "-o", str(binary), str(SOURCE)]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if r.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise TrafficGenError(f"{' '.join(cmd)} failed:\n{r.stderr}")
        if r.stderr.strip():
            print(r.stderr, file=sys.stderr)
        return cls(binary, tmp)

    def close(self) -> None:
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def __enter__(self) -> TrafficGen:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _run(self, args: list[str], timeout: float, what: str) -> dict[str, Any]:
        try:
            r = subprocess.run([str(self.binary), *args], capture_output=True, text=True,
                               timeout=timeout)
        except subprocess.TimeoutExpired:
            raise TrafficGenError(f"{what} did not finish within {timeout:.0f} s") from None
        if r.returncode != 0:
            raise TrafficGenError(f"{what} exited {r.returncode}: {r.stderr.strip()}")
        return _last_json(r.stdout, what)

    def generate(self, netns: str, *, src_mac: str, dst_mac: str, src_ip: str, dst_ip: str,
                 flows: int, duration: float, run_id: int, ifname: str = "eth0",
                 size: int = 60, cpu: int | None = None, batch: int = 256,
                 mode: str = "ring") -> dict[str, Any]:
        """Send for `duration` seconds; {"sent", "seconds", "pps", ...}."""
        args = ["gen", "--netns", netns, "--ifname", ifname, "--src-mac", src_mac,
                "--dst-mac", dst_mac, "--src-ip", src_ip, "--dst-ip", dst_ip,
                "--flows", str(flows), "--duration", f"{duration:.3f}", "--size", str(size),
                "--run-id", str(run_id), "--batch", str(batch), "--mode", mode]
        if cpu is not None:
            args += ["--cpu", str(cpu)]
        return self._run(args, duration + 30, "generator")

    def sink(self, netns: str, *, run_id: int, ifname: str = "eth0", cpu: int | None = None,
             max_seconds: float = 600) -> Sink:
        """Start a counting sink and wait until its ring is bound."""
        args = [str(self.binary), "sink", "--netns", netns, "--ifname", ifname,
                "--run-id", str(run_id), "--max-seconds", f"{max_seconds:.1f}"]
        if cpu is not None:
            args += ["--cpu", str(cpu)]
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            line = proc.stdout.readline() if proc.stdout else ""
            if line.strip() != "ready":
                proc.kill()
                _, err = proc.communicate(timeout=10)
                raise TrafficGenError(f"sink did not start: {line!r} {err.strip()}")
        except BaseException:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=10)
            raise
        return Sink(proc, timeout=15)

    def hello(self, netns: str, src_mac: str, ifname: str = "eth0", count: int = 3) -> None:
        """Broadcast `count` frames from src_mac: a learning switch learns it."""
        self._run(["hello", "--netns", netns, "--ifname", ifname, "--src-mac", src_mac,
                   "--count", str(count)], 30, "hello")

    def ping(self, netns: str, dst_ip: str, count: int = 200,
             interval_ms: float = 10) -> dict[str, Any]:
        """ICMP echo round trips: {"sent", "received", "rtt_us": [...]}."""
        args = ["ping", "--netns", netns, "--dst-ip", dst_ip, "--count", str(count),
                "--interval-ms", f"{interval_ms:g}"]
        return self._run(args, count * (interval_ms / 1000 + 1) + 10, "ping")


def main(argv: list[str]) -> int:
    if argv[1:2] != ["build"]:
        print("usage: python3 tools/trafficgen.py build", file=sys.stderr)
        return 2
    print(TrafficGen.build().binary)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

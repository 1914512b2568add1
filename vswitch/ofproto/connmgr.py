"""A bridge's OpenFlow connections: the controllers it dials and the
listeners it opens, with their state for `vswitchctl show`.

Targets are those `vswitch.config.validate_target` accepts:

- active `tcp:IP:PORT`, `ssl:IP:PORT`, `unix:PATH`: dialled, and redialled
  after a failure or a disconnect with exponential backoff (1 s doubling up to
  `max_backoff`); these are the bridge's *controllers*;
- passive `ptcp:PORT[:IP]` (IP defaults to 127.0.0.1) and `punix:PATH`:
  listeners whose connections are *service* connections (ovs-ofctl and
  friends), as Open vSwitch calls them.  Service connections get no
  asynchronous messages until they ask for them with SET_ASYNC, and they do
  not count as a controller for the fail mode.

The manager tells its owner (the `OFSwitch`) when a channel opens or closes;
what messages mean is the owner's business.  It also tracks how long the
bridge has been without any controller, which is what the fail mode needs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from vswitch.ofproto.channel import Channel

log = logging.getLogger("vswitchd.ofp")

DEFAULT_PROBE_S = 5.0
DEFAULT_MAX_BACKOFF_S = 8.0
CONNECT_TIMEOUT_S = 5.0


@dataclass
class Target:
    """One configured target and what is happening on it."""

    text: str
    kind: str                        # tcp ssl unix ptcp punix
    host: str = ""
    port: int = 0
    path: str = ""
    state: str = "idle"              # connecting backoff connected listening error
    last_error: str = ""
    n_connects: int = 0
    n_disconnects: int = 0
    channels: list[Channel] = field(default_factory=list)
    task: asyncio.Task | None = None
    server: asyncio.AbstractServer | None = None

    @property
    def active(self) -> bool:
        return self.kind in ("tcp", "ssl", "unix")


def parse_target(text: str) -> Target:
    """Split a validated target into its parts."""
    kind, _, rest = text.partition(":")
    if kind in ("unix", "punix"):
        return Target(text, kind, path=rest)
    if kind in ("tcp", "ssl"):
        host, _, port = rest.rpartition(":")
        return Target(text, kind, host=host.strip("[]"), port=int(port))
    port, _, host = rest.partition(":")
    return Target(text, kind, host=host.strip("[]") or "127.0.0.1", port=int(port))


def client_ssl_context(files: dict[str, str] | None) -> ssl.SSLContext:
    """Mutual TLS as OVS does it: our key and certificate, the peer checked
    against the CA (no host name check: controllers are named by IP)."""
    if not files:
        raise ValueError("ssl: target needs `vswitchctl set-ssl KEY CERT CACERT` first")
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=files["ca_cert"])
    ctx.check_hostname = False
    ctx.load_cert_chain(files["certificate"], files["private_key"])
    return ctx


class ConnectionManager:
    def __init__(self, name: str, *, on_open: Callable[[Channel, Target], None],
                 on_close: Callable[[Channel], None],
                 on_message: Callable[[Channel, object], None]) -> None:
        self.name = name
        self.on_open = on_open
        self.on_close = on_close
        self.on_message = on_message
        self.targets: dict[str, Target] = {}
        self.probe_interval = DEFAULT_PROBE_S
        self.max_backoff = DEFAULT_MAX_BACKOFF_S
        self.ssl_files: dict[str, str] | None = None
        # When the bridge last had a controller connection (monotonic seconds);
        # starts "now", so the fail mode waits one probe interval after start.
        self.controller_seen = time.monotonic()

    # --- configuration ---------------------------------------------------------------

    def configure(self, targets: list[str], probe_interval: float, max_backoff: float,
                  ssl_files: dict[str, str] | None) -> None:
        """Reconcile the running targets with the configured ones: targets
        that stay keep their connections."""
        self.probe_interval = probe_interval
        self.max_backoff = max_backoff
        self.ssl_files = ssl_files
        for text in list(self.targets):
            if text not in targets:
                self._stop(self.targets.pop(text))
        for text in targets:
            if text not in self.targets:
                t = parse_target(text)
                self.targets[text] = t
                t.task = asyncio.get_running_loop().create_task(
                    self._dial(t) if t.active else self._listen(t))

    async def close(self) -> None:
        targets = list(self.targets.values())
        self.targets.clear()
        for t in targets:
            self._stop(t)
        tasks = [t.task for t in targets if t.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _stop(self, t: Target) -> None:
        if t.task is not None:
            t.task.cancel()
        if t.server is not None:
            t.server.close()
        for ch in list(t.channels):
            ch.close()

    # --- state ----------------------------------------------------------------------

    def channels(self) -> list[Channel]:
        return [ch for t in self.targets.values() for ch in t.channels]

    def has_controllers(self) -> bool:
        return any(t.active for t in self.targets.values())

    def controller_connected(self) -> bool:
        return any(t.active and t.channels for t in self.targets.values())

    def seconds_without_controller(self) -> float:
        """0 while a controller is connected, else the time since the last one
        left (controller_seen is set when controller channels open and close)."""
        if self.controller_connected():
            return 0.0
        return time.monotonic() - self.controller_seen

    def status(self) -> list[dict]:
        out = []
        for t in self.targets.values():
            out.append({
                "target": t.text, "state": t.state, "last_error": t.last_error,
                "bound": [sock.getsockname() for sock in t.server.sockets]
                if t.server is not None else [],
                "connects": t.n_connects, "disconnects": t.n_disconnects,
                "connections": [{"peer": ch.peer, "negotiated": ch.version is not None,
                                 "connected_s": round(time.monotonic() - ch.connected_at, 1),
                                 **vars(ch.stats)} for ch in t.channels],
            })
        return out

    # --- running -------------------------------------------------------------------

    def _channel(self, t: Target, peer: str) -> Channel:
        """A channel registered with its target (and the owner) from the
        moment it connects until it is gone."""
        def opened(ch: Channel) -> None:
            t.channels.append(ch)
            t.n_connects += 1
            if t.active:
                self.controller_seen = time.monotonic()
            log.info("%s: %s connected", self.name, ch.peer)
            self.on_open(ch, t)

        def closed(ch: Channel) -> None:
            if ch in t.channels:
                t.channels.remove(ch)
            t.n_disconnects += 1
            if t.active:
                self.controller_seen = time.monotonic()
            why = ch.done.result() if ch.done.done() else ""
            if t.active:                   # a listener's state is not its clients'
                t.last_error = why
            log.info("%s: %s disconnected: %s", self.name, ch.peer, why)
            self.on_close(ch)

        return Channel(peer=peer, probe_interval=self.probe_interval,
                       on_message=self.on_message, on_open=opened, on_close=closed)

    async def _dial(self, t: Target) -> None:
        loop = asyncio.get_running_loop()
        backoff = 1.0
        while True:
            t.state = "connecting"
            ch = self._channel(t, t.text)
            try:
                if t.kind == "unix":
                    conn = loop.create_unix_connection(lambda ch=ch: ch, t.path)
                else:
                    ctx = client_ssl_context(self.ssl_files) if t.kind == "ssl" else None
                    conn = loop.create_connection(lambda ch=ch: ch, t.host, t.port, ssl=ctx)
                await asyncio.wait_for(conn, CONNECT_TIMEOUT_S)
            except (TimeoutError, OSError, ValueError, ssl.SSLError) as e:
                t.last_error = str(e) or type(e).__name__
                t.state = "backoff"
                log.debug("%s: %s: %s (retry in %.0f s)", self.name, t.text, t.last_error,
                          backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                continue
            t.state = "connected"
            started = time.monotonic()
            await ch.run()
            # A connection that lived a while starts the backoff afresh.
            if time.monotonic() - started > self.max_backoff:
                backoff = 1.0
            t.state = "backoff"
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff)

    async def _listen(self, t: Target) -> None:
        loop = asyncio.get_running_loop()
        try:
            if t.kind == "punix":
                if os.path.exists(t.path):
                    os.unlink(t.path)
                t.server = await loop.create_unix_server(lambda: self._channel(t, t.text),
                                                         t.path)
                os.chmod(t.path, 0o600)
            else:
                t.server = await loop.create_server(lambda: self._channel(t, t.text), t.host,
                                                    t.port, reuse_address=True)
        except OSError as e:
            t.state = "error"
            t.last_error = f"cannot listen: {e.strerror or e}"
            log.error("%s: %s: %s", self.name, t.text, t.last_error)
            return
        t.state = "listening"
        log.info("%s: listening on %s", self.name, t.text)
        try:
            await asyncio.Event().wait()
        finally:
            t.server.close()
            if t.kind == "punix" and os.path.exists(t.path):
                os.unlink(t.path)

"""systemd's notify protocol, without libsystemd: one datagram per message.

With Type=notify systemd passes NOTIFY_SOCKET (a path, or '@name' for the abstract
namespace); the service sends "READY=1", "STATUS=...", "WATCHDOG=1", "STOPPING=1" to it.
WATCHDOG_USEC (set with WatchdogSec=) says how often systemd expects a ping; we ping at
half that. Outside systemd (no NOTIFY_SOCKET) every call does nothing.
"""
import os
import socket

__all__ = ["Notifier"]


class Notifier:
    def __init__(self, environ=None):
        environ = os.environ if environ is None else environ
        address = environ.get("NOTIFY_SOCKET") or None
        if address and address.startswith("@"):
            address = "\0" + address[1:]
        self._address = address
        self._sock = None
        usec = environ.get("WATCHDOG_USEC")
        pid = environ.get("WATCHDOG_PID")
        watchdog_for_us = usec and usec.isdigit() and (not pid or pid == str(os.getpid()))
        self.watchdog_interval_s = int(usec) / 2e6 if watchdog_for_us else None

    @property
    def enabled(self):
        return self._address is not None

    def send(self, *assignments):
        """Send 'KEY=value' lines; errors are swallowed (systemd may be gone at stop)."""
        if not self._address:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto("\n".join(assignments).encode(), self._address)
            return True
        except OSError:
            return False

    def ready(self, status=None):
        return self.send("READY=1", *(() if status is None else (f"STATUS={status}",)))

    def status(self, text):
        return self.send(f"STATUS={text}")

    def watchdog(self):
        return self.send("WATCHDOG=1")

    def stopping(self):
        return self.send("STOPPING=1")

    def close(self):
        if self._sock is not None:
            self._sock.close()
            self._sock = None

"""Headless Chromium for the pages' tests, and a proxy that sees every request a page makes."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import threading
from pathlib import Path
from typing import List

import pytest

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Chromium's own time, update and account checks, made whatever page is open
CHROMIUM_OWN_HOSTS = ("google.com", "googleapis.com", "gstatic.com", "gvt1.com")


@pytest.fixture(scope="session")
def chromium() -> str:
    """Chromium, installed from the distribution's packages when absent."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if shutil.which("apt-get") is None:
        pytest.skip("Chromium is not installed and apt-get is not available to install it")
    try:
        subprocess.run(["apt-get", "update"], capture_output=True, timeout=300, check=True)
        subprocess.run(
            ["apt-get", "install", "-y", "chromium"], capture_output=True, timeout=900, check=True
        )
    except (subprocess.SubprocessError, OSError) as exc:
        pytest.skip(f"Chromium is not installed and `apt-get install chromium` failed: {exc}")
    found = shutil.which("chromium")
    if not found:
        pytest.skip("`apt-get install chromium` ran but no chromium binary was found")
    return found


class RequestRecorder:
    """A loopback proxy for Chromium: records the first line of every request sent to it."""

    def __init__(self) -> None:
        self._server = socket.socket()
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(32)
        self.port = self._server.getsockname()[1]
        self.lines: List[str] = []
        self._thread = threading.Thread(target=self._accept, name="request-recorder", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    self.lines.append(conn.recv(4096).split(b"\r\n", 1)[0].decode("latin-1"))
                except OSError:
                    self.lines.append("(unreadable request)")

    @property
    def flags(self) -> List[str]:
        # every request goes to this proxy, loopback ones included
        return [f"--proxy-server=http://127.0.0.1:{self.port}", "--proxy-bypass-list=<-loopback>"]

    def page_requests(self) -> List[str]:
        """The requests recorded, less Chromium's own background ones."""

        def host(line: str) -> str:
            target = line.split(" ")[1] if " " in line else ""
            return target.split("://")[-1].split("/")[0].split(":")[0]

        return [
            line
            for line in self.lines
            if not any(
                host(line) == own or host(line).endswith("." + own) for own in CHROMIUM_OWN_HOSTS
            )
        ]

    def close(self) -> None:
        """Stop and join the accepting thread (one request at a time: at most its 5 s read).

        Closing a listening socket does not wake a thread blocked in ``accept()`` on Linux:
        shutting it down does (``accept()`` then fails), so the thread ends here.
        """
        with contextlib.suppress(OSError):  # some platforms refuse it on a listening socket
            self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()
        self._thread.join(10)


def dump_dom(chromium: str, page: Path, profile_dir: Path, fragment: str = "", *extra: str) -> str:
    """The page's DOM after its scripts ran, as Chromium renders it."""
    flags = [*CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}", "--window-size=1400,900", *extra]
    return subprocess.run(
        [chromium, *flags, "--dump-dom", page.as_uri() + fragment],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout

"""`tessera serve --port 0 --http-port 0` as a subprocess, for the HTTP API and console tests."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


class HttpServe:
    """The real server: gRPC address from its first stdout line, the HTTP one from its second."""

    def __init__(self, data_dir: Path, *extra: str) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log = data_dir.parent / f"{data_dir.name}-server.log"
        command = [
            sys.executable, "-m", "tessera.cli", "serve", "--data-dir", str(data_dir),
            "--port", "0", "--http-port", "0", *extra,
        ]  # fmt: skip
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True, cwd=REPO)
        first = self.process.stdout.readline()  # type: ignore[union-attr]
        second = self.process.stdout.readline()  # type: ignore[union-attr]
        if "tessera serving on" not in first or "tessera http on" not in second:
            self.process.kill()
            raise RuntimeError(f"tessera serve did not start: {first}{second}{self.log.read_text()[-3000:]}")
        self.address = first.split(" on ")[1].split(" ")[0]
        self.http_address = second.split(" on ")[1].split(" ")[0]
        self.url = f"http://{self.http_address}"

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(60)

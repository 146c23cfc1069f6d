"""A `milvus-lite server` on 127.0.0.1, for the Milvus backend's tests and benchmark.

milvus-lite (3.x) speaks Milvus's gRPC protocol as a standalone local server, so pymilvus and
`tessera serve --milvus-uri` reach it exactly as they would a Milvus cluster.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MilvusLiteServer:
    """Started on a free port over `data_dir`; `uri` is what pymilvus and --milvus-uri take."""

    def __init__(self, data_dir: Path, *, timeout_s: float = 60.0) -> None:
        executable = shutil.which("milvus-lite") or str(Path(sys.executable).with_name("milvus-lite"))
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir.parent / f"{data_dir.name}-milvus.log"
        self.log = open(self.log_path, "w")
        command = [executable, "server", "--data-dir", str(data_dir), "--host", "127.0.0.1", "--port", str(self.port)]
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"milvus-lite server exited ({self.process.returncode}): {self.log_path.read_text()}"
                )
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"milvus-lite server did not listen within {timeout_s} s") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()

    def __enter__(self) -> MilvusLiteServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

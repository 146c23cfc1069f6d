"""Throwaway certificates made with the openssl command, for TLS and mutual-TLS tests."""

from __future__ import annotations

import subprocess
from pathlib import Path


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_cert(folder: Path, name: str, signed_by: str | None = None) -> tuple[Path, Path]:
    """(certificate, key) for `name`: a self-signed CA when `signed_by` is None, else signed by that CA."""
    key, csr, crt, ext = (folder / f"{name}.{suffix}" for suffix in ("key", "csr", "crt", "ext"))
    _openssl(
        "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}"
    )
    if signed_by is None:
        ext.write_text("basicConstraints=CA:TRUE\n")
        _openssl(
            "x509", "-req", "-in", str(csr), "-signkey", str(key), "-out", str(crt), "-days", "2", "-extfile", str(ext)
        )
    else:
        ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        ca_crt, ca_key = folder / f"{signed_by}.crt", folder / f"{signed_by}.key"
        _openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key), "-CAcreateserial",
            "-out", str(crt), "-days", "2", "-extfile", str(ext),
        )  # fmt: skip
    return crt, key

"""An S3-protocol server on loopback (moto in server mode) with IAM enforced, and hub helpers.

moto checks signatures and IAM policies once its auth is switched on (``/moto-api/reset-auth``),
so the session creates two users first: ``writer`` (s3:*) and ``reader`` (get and list only).
Each test gets its own bucket.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    writer: tuple[str, str]
    reader: tuple[str, str]

    def env(self, who: str = "writer") -> dict[str, str]:
        key, secret = self.writer if who == "writer" else self.reader
        return {
            "AWS_ACCESS_KEY_ID": key,
            "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def client(self, who: str = "writer") -> Any:
        import boto3

        env = self.env(who)
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def s3_server() -> Any:
    import boto3

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.1)
        iam = boto3.client(
            "iam", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
        )

        def user(name: str, actions: list[str]) -> tuple[str, str]:
            iam.create_user(UserName=name)
            policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}
            iam.put_user_policy(UserName=name, PolicyName="hub", PolicyDocument=json.dumps(policy))
            key = iam.create_access_key(UserName=name)["AccessKey"]
            return key["AccessKeyId"], key["SecretAccessKey"]

        writer = user("writer", ["s3:*"])
        reader = user("reader", ["s3:GetObject", "s3:ListBucket"])
        # From here on every request must be signed by a known key and allowed by its policy.
        request = urllib.request.Request(
            f"{endpoint}/moto-api/reset-auth", data=b"0", method="POST", headers={"Content-Type": "text/plain"}
        )
        urllib.request.urlopen(request, timeout=5).close()
        yield S3Server(endpoint, writer, reader)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    name = f"hub-{uuid.uuid4().hex[:12]}"
    s3_server.client().create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_hub(s3_server: S3Server, bucket: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A hub URL in a fresh bucket, with the writer's credentials in the environment."""
    for key, value in s3_server.env("writer").items():
        monkeypatch.setenv(key, value)
    return f"s3://{bucket}/team"


def use_credentials(monkeypatch: pytest.MonkeyPatch, server: S3Server, who: str) -> None:
    for key, value in server.env(who).items():
        monkeypatch.setenv(key, value)


def bucket_objects(server: S3Server, bucket: str) -> dict[str, int]:
    """Every key in the bucket with its size (read with the writer's credentials)."""
    client = server.client()
    out: dict[str, int] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        out.update({o["Key"]: int(o["Size"]) for o in page.get("Contents", [])})
    return out


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def http_server() -> Any:
    """Serve a folder over http on loopback: ``serve(folder) -> base URL``."""
    servers: list[ThreadingHTTPServer] = []

    def serve(folder: Path) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=os.fspath(folder)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()

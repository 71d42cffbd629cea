"""Fixtures for the cloud_security_group tests: a private moto_server on 127.0.0.1."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto_harness import REGION, Runner, World, clean_env, free_port, make_world, tool


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """Start moto_server on a free loopback port for the session; stop it at the end."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(  # noqa: S603 - fixed argv
        [tool("moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2):  # noqa: S310 - loopback
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.2)
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def ec2(moto_endpoint: str) -> Any:
    """A boto3 EC2 client on a freshly reset moto."""
    req = urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST")  # noqa: S310 - loopback
    with urllib.request.urlopen(req, timeout=10):  # noqa: S310 - loopback
        pass
    return boto3.client(
        "ec2",
        region_name=REGION,
        endpoint_url=moto_endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture
def world(ec2: Any) -> World:
    return make_world(ec2)


@pytest.fixture
def runner(tmp_path: Path, moto_endpoint: str) -> Runner:
    return Runner(tmp_path, moto_endpoint)

"""Fixtures for the Alibaba Cloud / Tencent Cloud providers: a fresh contract server per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cn_harness import SDK_ENV_PREFIXES, Cloud, make
from moto_harness import Runner


@pytest.fixture(params=["aliyun", "tencent"])
def cloud(request: pytest.FixtureRequest) -> Iterator[Cloud]:
    made = make(request.param)
    made.fake.start()
    try:
        yield made
    finally:
        made.fake.stop()


@pytest.fixture
def runner(tmp_path: Path, cloud: Cloud) -> Runner:
    """moto_harness's runner with the host pointed at the fake; credentials in the environment."""
    run = Runner(tmp_path, cloud.fake.url)
    run.env = {k: v for k, v in run.env.items() if not k.upper().startswith(SDK_ENV_PREFIXES)}
    run.env.update(cloud.env())
    return run

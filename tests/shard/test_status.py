"""The `shards` section of `/status`: the records each shard has learnt from, so a user sees
how the sources split between shards (real shard processes, `/status` read over HTTP)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.conftest import free_port, http_json
from tests.shard.test_route import NOW, request, service_on
from via_otlp.app import App
from via_otlp.config import parse_config
from via_otlp.receive.otlp_codec import Encoding


def test_status_shows_the_records_each_shard_consumed(tmp_path: Path) -> None:
    """Records of a source on shard 0 and of one on shard 1, in a request cut between them and
    in one for shard 1 alone: each shard's count is its own records, and the counts add up to
    the service's `records_consumed`. (Only in-flight records and restarts were shown.)"""
    http_port = free_port()
    cfg = parse_config(
        f"""{{receive: {{grpc: {{enabled: false}}, http: {{endpoint: "127.0.0.1:{http_port}"}}}},
             pipeline: {{workers: 2}}, state: {{data_dir: "{tmp_path}"}},
             registry: {{enabled: false}}, control: {{enabled: false}},
             correlate: {{enabled: false}}}}"""
    )
    a, b = service_on(0), service_on(1)

    async def main() -> Any:
        app = App(cfg)
        await app.start()
        try:
            pool = app.pool
            assert pool is not None
            for services in ({a: 3, b: 5}, {b: 2}):
                await pool.submit_payload(request(services), Encoding.PROTOBUF, now_ns=NOW)
            await asyncio.wait_for(pool.wait_idle(), 60)
            return await asyncio.to_thread(http_json, f"http://127.0.0.1:{http_port}/status")
        finally:
            await app.shutdown()

    status = asyncio.run(main())
    assert [s["records_consumed"] for s in status["shards"]["each"]] == [3, 7], status["shards"]
    assert status["intake"]["records_consumed"] == 10

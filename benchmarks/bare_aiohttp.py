"""The ceiling for this stack: a bare aiohttp server whose ``/livez`` returns 200 "ok".

benchmarks/run.py measures it with wrk next to the sidecar's ``/livez``, in the same run,
with the same settings the sidecar uses (default asyncio loop, no access log).

    python benchmarks/bare_aiohttp.py --listen 127.0.0.1:9099
"""

from __future__ import annotations

import argparse

from aiohttp import web


async def livez(_request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


def create_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/livez", livez)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listen", default="127.0.0.1:9099", help="HOST:PORT (loopback)")
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    web.run_app(create_app(), host=host, port=int(port), access_log=None, print=None)


if __name__ == "__main__":
    main()

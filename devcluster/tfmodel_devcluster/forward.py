"""A TCP forwarder between two network namespaces.

Started by `nsenter --net=<node netns> python forward.py --fd N --to HOST:PORT`: the listening
socket (inherited as fd N) was created in the caller's namespace (the host's loopback), while
the connections it opens are made from the namespace this process runs in. So kubectl, helm
and the tests on the host reach the test cluster's API server, which lives in the node's
network namespace, through 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _serve(listener: socket.socket, host: str, port: int) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(host, port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    server = await asyncio.start_server(handle, sock=listener)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fd", type=int, required=True, help="inherited listening socket")
    parser.add_argument("--to", required=True, help="HOST:PORT to connect to")
    args = parser.parse_args()
    host, _, port = args.to.rpartition(":")
    listener = socket.socket(fileno=args.fd)
    asyncio.run(_serve(listener, host, int(port)))


if __name__ == "__main__":
    main()

"""python -m mailsink --host 127.0.0.1 --port 2525 --maildir var/mail"""

import argparse
import asyncio
import logging
import os
import signal
from pathlib import Path

from aiosmtpd.smtp import SMTP

from common import logs
from mailsink.handler import MaildirHandler

log = logging.getLogger("mailsink")


async def serve(host: str, port: int, directory: Path) -> None:
    loop = asyncio.get_running_loop()
    handler = MaildirHandler(directory)
    # A fixed host name: the default asks DNS for this machine's FQDN, which can hang offline.
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="mailsink", enable_SMTPUTF8=True, loop=loop),
        host,
        port,
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("listening", extra={"address": f"{host}:{port}", "maildir": str(directory)})
    await stop.wait()
    server.close()
    await server.wait_closed()
    log.info("stopped")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m mailsink", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--maildir", type=Path, required=True, help="folder receiving one .eml per message")
    args = parser.parse_args()
    logs.configure("mailsink", "mailsink", os.environ.get("LOG_LEVEL", "INFO"))
    # aiosmtpd narrates every SMTP command at INFO; one line per message is ours to write
    logging.getLogger("mail.log").setLevel(max(logging.WARNING, logging.root.level))
    args.maildir.mkdir(parents=True, exist_ok=True)
    asyncio.run(serve(args.host, args.port, args.maildir))


if __name__ == "__main__":
    main()

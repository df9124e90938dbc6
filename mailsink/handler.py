"""aiosmtpd handler: store each message, log one line about it."""

import logging
from email.parser import BytesHeaderParser
from email.policy import default
from pathlib import Path

from mailsink import maildir

log = logging.getLogger("mailsink")


class MaildirHandler:
    def __init__(self, directory: Path):
        self.directory = directory

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 (aiosmtpd's hook name)
        content = envelope.original_content or envelope.content
        try:
            path = maildir.store(self.directory, content)
        except OSError:
            log.exception("could not store a message")
            return "451 Requested action aborted: local error in processing"
        headers = BytesHeaderParser(policy=default).parsebytes(content)
        log.info(
            "message received",
            extra={
                "subject": str(headers.get("subject", "")),
                "recipients": list(envelope.rcpt_tos),
                "sender": envelope.mail_from,
                "file": path.name,
            },
        )
        return "250 Message accepted for delivery"

"""JSON-lines logging, one object per line, with the fields every part of the stack writes."""

import json
import logging
import sys
from datetime import UTC, datetime

SERVICE = "mailsink"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": SERVICE,
            "instance": SERVICE,
            "message": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    # aiosmtpd narrates every SMTP command at INFO; one line per message is ours to write
    logging.getLogger("mail.log").setLevel(max(logging.WARNING, logging.root.level))

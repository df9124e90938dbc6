"""One received message, one .eml file: written whole or not at all, named to sort by arrival."""

import os
import secrets
from datetime import UTC, datetime
from pathlib import Path


def message_name(now: datetime) -> str:
    # UTC with microseconds sorts lexically in arrival order; the random tail keeps two
    # messages of the same microsecond apart.
    return f"{now.astimezone(UTC):%Y%m%dT%H%M%S.%fZ}-{secrets.token_hex(4)}.eml"


def store(directory: Path, content: bytes) -> Path:
    """Write `content` as a new .eml file in `directory`; return its path."""
    # The partial file lives in a hidden sibling folder of the same file system, so the
    # rename is atomic and a reader listing *.eml never sees half a message.
    partial_dir = directory / ".tmp"
    partial_dir.mkdir(parents=True, exist_ok=True)
    name = message_name(datetime.now(UTC))
    partial = partial_dir / name
    with open(partial, "wb") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    final = directory / name
    os.replace(partial, final)
    return final

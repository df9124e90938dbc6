"""Crafted photos in parallel with honest users: what an upload attack costs the cluster.

    python -m loadtests.hostile_uploads [--crafted 24] [--kind PREFIX] [--honest 4] [--pages 4] [--warmup 5]

Runs against the native stack that is already up (`./init.sh`), through its public nginx. After
a warm-up of honest traffic (registrations with phone-sized and small photos, page loads), it
sends `--crafted` crafted photos at once, made here (nothing is read from disk):

* `jpeg-scans-*`: progressive JPEGs of 4000x4000 pixels made of thousands of tiny scans: every
  scan makes the decoder walk all 250,000 blocks again, so 0.6 MB cost 15 s of CPU;
* `jpeg-restarts-5MiB`: a small JPEG whose header is padded with 2.6 million restart markers,
  which a scan in Python, its own or Pillow's, walks one at a time (2 s of CPU before the
  decode budget, then that whole budget, when the structure check did);
* `png-40mpx`: a 1-bit PNG of 6300x6300 pixels in about 5 KB;
* `png-text`: a PNG whose compressed text chunks inflate to 1 MB each.

With `--heavy` it sends blank pictures just inside the limits instead (see heavy_files()): they
may be stored, answered 503, or refused past the CPU budget, but within the same time and memory.

It keeps the honest traffic going until every crafted upload is answered, then prints each
crafted answer (status, error code, seconds), the honest registrations (failed, latency), the
page loads' p95 and worst, the CPU the replicas used during the attack, their memory (RSS of
each replica's gunicorn master and workers, from the pids the supervisor recorded: before, peak,
after) and whether anything crafted was stored.
The last line is one JSON object. Exit status: 0 when the goals hold (every crafted upload
answered with a 4xx within 5 s and nothing of it stored, every honest registration stored,
honest registrations and page loads during the attack each answered within 1.5 s, page p95 under
1 s, replicas together growing by less than 600 MB), 1 when one is missed, 2 when the stack is not up.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import struct
import sys
import threading
import time
import uuid
import zlib
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import psutil
import requests

from common import records
from loadtests.drill import integrity, p95
from loadtests.workload import make_jpeg, random_city
from stack import supervisor
from stack.parts import all_parts
from stack.settings import load

GOALS = {"crafted_s": 5.0, "honest_during_attack_s": 1.5, "page_p95_s": 1.0, "growth_mb": 600}
MAX_UPLOAD = 5 * 2**20


# --- crafted files (also used by the tests) ------------------------------------------


def _segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def _entropy(codes: list[tuple[int, int]]) -> bytes:
    """Huffman-coded bits (value, length) as JPEG writes them: 1-padded, each 0xFF stuffed."""
    bits = "".join(format(value, f"0{length}b") for value, length in codes)
    bits += "1" * (-len(bits) % 8)
    data = int(bits, 2).to_bytes(len(bits) // 8, "big") if bits else b""
    return data.replace(b"\xff", b"\xff\x00")


def progressive_jpeg(width: int, height: int, scans: int = 1, components: int = 1, coding: int = 0xC2) -> bytes:
    """A progressive JPEG (every block flat grey) of one DC scan and `scans` AC scans.

    The AC scans all say "the next 32,767 blocks are empty" until the image is covered, so
    each costs about 30 bytes and a whole pass over the image's blocks to decode. libjpeg
    only warns that the progression is repeated. `coding` is the frame marker (0xC2:
    progressive Huffman, 0xCA: progressive arithmetic, ...) for files that are refused by it.
    """
    blocks = -(-width // 8) * -(-height // 8)
    ids = bytes(range(1, components + 1))
    frame = struct.pack(">BHHB", 8, height, width, components) + b"".join(bytes([c, 0x11, 0]) for c in ids)
    head = (
        b"\xff\xd8"
        + _segment(0xDB, b"\x00" + b"\x01" * 64)
        + _segment(coding, frame)
        # one code each, 1 bit long: DC "difference 0"; AC "a run of 2**14 + (14 bits) empty blocks"
        + _segment(0xC4, b"\x00\x01" + b"\x00" * 15 + b"\x00")
        + _segment(0xC4, b"\x10\x01" + b"\x00" * 15 + b"\xe0")
    )
    dc_scan = _segment(0xDA, bytes([components]) + b"".join(bytes([c, 0]) for c in ids) + b"\x00\x00\x00")
    dc_scan += _entropy([(0, 1)] * (blocks * components))
    runs = _entropy([(0b0_11111111111111, 15)] * -(-blocks // 32767))
    ac_scans = [_segment(0xDA, bytes([1, ids[n % components], 0, 1, 63, 0])) + runs for n in range(scans)]
    return head + dc_scan + b"".join(ac_scans) + b"\xff\xd9"


def scan_flood_jpeg(size: int, width: int = 4000, height: int = 4000) -> bytes:
    """A progressive JPEG of about `size` bytes, nearly all of them tiny scans."""
    one_scan = len(progressive_jpeg(width, height, 2)) - len(progressive_jpeg(width, height, 1))
    base = len(progressive_jpeg(width, height, 0))
    return progressive_jpeg(width, height, max(1, (size - base) // one_scan))


def restart_flood_jpeg(size: int) -> bytes:
    """A 64x64 JPEG of about `size` bytes, nearly all of them restart markers in its header."""
    photo = make_jpeg(64, 64)
    return photo[:2] + b"\xff\xd0" * ((size - len(photo)) // 2) + photo[2:]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_file(
    width: int,
    height: int,
    bit_depth: int = 1,
    color_type: int = 0,
    interlace: int = 0,
    extra: list[tuple[bytes, bytes]] = (),
) -> bytes:
    """A PNG whose pixels are all zero, written chunk by chunk: Pillow cannot save every
    depth, nor interlace, and this never holds the pixels in memory (1-bit 40 Mpx: 5 KB)."""
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color_type]
    if interlace:  # Adam7: seven reduced images, each row with its filter byte
        passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
        shapes = [(-(-(width - x) // dx), -(-(height - y) // dy)) for x, y, dx, dy in passes]
    else:
        shapes = [(width, height)]
    raw_size = sum(h * (1 + -(-w * channels * bit_depth // 8)) for w, h in shapes if w > 0 and h > 0)
    compress = zlib.compressobj(9)
    zeros = bytes(2**20)
    data = [compress.compress(zeros[: min(len(zeros), raw_size - done)]) for done in range(0, raw_size, len(zeros))]
    data.append(compress.flush())
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, interlace)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + b"".join(_chunk(k, d) for k, d in extra)
        + _chunk(b"IDAT", b"".join(data))
        + _chunk(b"IEND", b"")
    )


def text_bomb_png(chunks: int, inflated: int = 2**20 - 1) -> bytes:
    """A small PNG with `chunks` zTXt chunks of about 1 KB that each inflate to `inflated` bytes."""
    text = b"comment\0\0" + zlib.compress(bytes(inflated), 9)
    return png_file(64, 64, 8, 2, extra=[(b"zTXt", text)] * chunks)


def crafted_files() -> dict[str, bytes]:
    return {
        "jpeg-scans-0.6MB": scan_flood_jpeg(600_000),
        "jpeg-scans-1.2MB": scan_flood_jpeg(1_200_000),
        "jpeg-scans-5MiB": scan_flood_jpeg(MAX_UPLOAD - 4096),
        "jpeg-restarts-5MiB": restart_flood_jpeg(MAX_UPLOAD - 4096),
        "png-40mpx": png_file(6300, 6300),
        "png-text": text_bomb_png(60),
    }


def heavy_files() -> dict[str, bytes]:
    """Blank pictures just inside the default limits (10 Mpx decoded, 20 M coefficients, 100
    scans): the most a few kilobytes may make a replica decode. They are stored, answered 503,
    or refused (400) past the CPU budget (the 10 Mpx RGBA PNG, at 0.3 s)."""
    return {
        "png-rgba-10mpx": png_file(3162, 3162, 8, 6),
        "png-1bit-10mpx": png_file(3162, 3162),
        "jpeg-progressive-grey": progressive_jpeg(4470, 4470, 99),
        "jpeg-progressive-rgb": progressive_jpeg(2576, 2576, 99, components=3),
    }


# --- the measurement -------------------------------------------------------------------


class ReplicaMemory:
    """RSS of every replica's gunicorn master and workers, sampled in the background."""

    def __init__(self, s):
        self.pids = {}
        for part in all_parts(s):
            pid = supervisor.running_pid(s, part) if part.name.startswith("instance-") else None
            if pid:
                self.pids[part.name] = pid
        self.peak: dict[str, int] = {}
        self.before = self.sample()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def sample(self) -> dict[str, int]:
        rss = {}
        for name, pid in self.pids.items():
            total = 0
            for process in self._processes(pid):
                with contextlib.suppress(psutil.NoSuchProcess):  # a worker replaced meanwhile
                    total += process.memory_info().rss
            rss[name] = total
        return rss

    def cpu_seconds(self) -> float:
        """User and system CPU of every replica process so far."""
        total = 0.0
        for pid in self.pids.values():
            for process in self._processes(pid):
                with contextlib.suppress(psutil.NoSuchProcess):
                    times = process.cpu_times()
                    total += times.user + times.system
        return total

    @staticmethod
    def _processes(pid: int) -> list[psutil.Process]:
        with contextlib.suppress(psutil.NoSuchProcess):
            master = psutil.Process(pid)
            return [master, *master.children(recursive=True)]
        return []

    def _watch(self) -> None:
        while not self._stop.wait(0.25):
            for name, value in self.sample().items():
                self.peak[name] = max(self.peak.get(name, 0), value)

    def __enter__(self) -> ReplicaMemory:
        self.peak = dict(self.before)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.after = self.sample()


class Honest:
    """Registrations and page loads in loops until stopped, each answer timed."""

    def __init__(self, url: str, marker: str):
        self.url = url
        self.marker = marker
        self.stop = threading.Event()
        self.registrations: list[dict] = []
        self.pages: list[dict] = []
        self.photos = [("4000x3000", make_jpeg(4000, 3000, 92)), ("1024x768", make_jpeg(1024, 768))]

    def register(self, worker: int) -> None:
        http = requests.Session()
        n = 0
        while not self.stop.is_set():
            label, photo = self.photos[(worker + n) % len(self.photos)]
            n += 1
            started = time.monotonic()
            try:
                response = http.post(
                    f"{self.url}/api/registrations",
                    timeout=30,
                    data={"name": f"Ana Honest {self.marker}", "city": random_city()},
                    files={"photo": ("id.jpg", photo, "image/jpeg")},
                )
                status = response.status_code
            except requests.RequestException as error:
                status = error.__class__.__name__
            self.registrations.append(
                {"t": time.monotonic(), "photo": label, "status": status, "s": time.monotonic() - started}
            )

    def browse(self) -> None:
        http = requests.Session()
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                status = http.get(f"{self.url}/", timeout=30).status_code
            except requests.RequestException as error:
                status = error.__class__.__name__
            self.pages.append({"t": time.monotonic(), "status": status, "s": time.monotonic() - started})
            time.sleep(0.05)


def _upload(url: str, kind: str, raw: bytes, marker: str, start: threading.Barrier) -> dict:
    start.wait()
    began = time.monotonic()
    try:
        response = requests.post(
            f"{url}/api/registrations",
            timeout=300,
            data={"name": f"Eve Crafted {marker}", "city": "Quito"},
            files={
                "photo": (
                    "id.jpg" if kind.startswith("jpeg") else "id.png",
                    raw,
                    "image/jpeg" if kind.startswith("jpeg") else "image/png",
                )
            },
        )
        status = response.status_code
        try:
            code = response.json()["error"]["code"]
        except (ValueError, KeyError, TypeError):
            code = None
    except requests.RequestException as error:
        status, code = error.__class__.__name__, None
    return {
        "kind": kind,
        "bytes": len(raw),
        "status": status,
        "code": code,
        "s": round(time.monotonic() - began, 2),
        "t": began,
    }


def run(args: argparse.Namespace) -> int:
    s = load()
    needed = [p.name for p in all_parts(s) if p.name.startswith(("instance-", "nginx", "mongodb", "photo-store"))]
    if not supervisor.stack_is_up(s, needed):
        return 2
    db = s.database()
    marker = uuid.uuid4().hex[:12]
    began = datetime.now(UTC)
    files = heavy_files() if args.heavy else crafted_files()
    if args.kind:
        files = {kind: raw for kind, raw in files.items() if kind.startswith(args.kind)}
    kinds = list(files)
    honest = Honest(s.public_url, marker)
    print(f"crafted: {', '.join(f'{k} ({len(v) / 1e6:.2f} MB)' for k, v in files.items())}", flush=True)

    with ReplicaMemory(s) as memory, ThreadPoolExecutor(args.honest + args.pages + args.crafted) as pool:
        background = [pool.submit(honest.register, n) for n in range(args.honest)]
        background += [pool.submit(honest.browse) for _ in range(args.pages)]
        time.sleep(args.warmup)
        at_attack = memory.sample()
        cpu_at_attack = memory.cpu_seconds()
        attack_began = time.monotonic()
        start = threading.Barrier(args.crafted)
        uploads = [
            pool.submit(_upload, s.public_url, kinds[n % len(kinds)], files[kinds[n % len(kinds)]], marker, start)
            for n in range(args.crafted)
        ]
        crafted = [future.result() for future in uploads]
        attack_ended = time.monotonic()
        attack_cpu = memory.cpu_seconds() - cpu_at_attack
        time.sleep(args.warmup)  # honest traffic after the attack: does the cluster recover at once?
        honest.stop.set()
        for future in background:
            future.result()

    during = [row for row in honest.registrations if attack_began <= row["t"] - row["s"] <= attack_ended]
    pages_during = [row["s"] for row in honest.pages if attack_began <= row["t"] - row["s"] <= attack_ended]
    registered_ok = [row for row in honest.registrations if row["status"] == 201]
    growth = {name: memory.peak[name] - memory.before[name] for name in memory.pids}
    result = {
        "crafted": len(crafted),
        "crafted_worst_s": max(row["s"] for row in crafted),
        "crafted_statuses": _statuses(crafted),
        "crafted_stored": db[records.REGISTRATIONS].count_documents({"name": f"Eve Crafted {marker}"}),
        "honest_registrations": len(honest.registrations),
        "honest_failed": len(honest.registrations) - len(registered_ok),
        "honest_failures": _statuses(row for row in honest.registrations if row["status"] != 201),
        "honest_during_attack": len(during),
        "honest_during_attack_failed": sum(1 for row in during if row["status"] != 201),
        "honest_p95_s": _round(p95([row["s"] for row in registered_ok])),
        "honest_worst_s_during_attack": _round(max((row["s"] for row in during), default=None)),
        "pages": len(honest.pages),
        "pages_failed": sum(1 for row in honest.pages if row["status"] != 200),
        "page_p95_s": _round(p95([row["s"] for row in honest.pages])),
        "page_p95_s_during_attack": _round(p95(pages_during)),
        "page_worst_s_during_attack": _round(max(pages_during, default=None)),
        "attack_s": _round(attack_ended - attack_began),
        # honest traffic included: an upper bound of what the crafted uploads cost
        "replicas_cpu_s_during_attack": _round(attack_cpu),
        "rss_mb_before": _mb(sum(memory.before.values())),
        "rss_growth_mb_peak": _mb(sum(growth.values())),
        "rss_growth_mb_after": _mb(sum(memory.after.values()) - sum(memory.before.values())),
        "rss_growth_mb_warmup": _mb(sum(at_attack.values()) - sum(memory.before.values())),
        "rss_growth_mb_peak_by_replica": {name: _mb(value) for name, value in growth.items()},
        **integrity(s, db, began),
    }

    for row in sorted(crafted, key=lambda row: row["s"]):
        print(
            f"crafted {row['kind']:<18} {row['bytes'] / 1e6:6.2f} MB -> {row['status']} {row['code'] or ''}"
            f"  {row['s']:.2f}s"
        )
    print(
        f"honest registrations: {result['honest_registrations']} ({result['honest_failed']} failed "
        f"{result['honest_failures']}; "
        f"{result['honest_during_attack']} during the attack, {result['honest_during_attack_failed']} failed, "
        f"worst {result['honest_worst_s_during_attack']}s), p95 {result['honest_p95_s']}s"
    )
    print(
        f"page loads: {result['pages']} ({result['pages_failed']} failed), p95 {result['page_p95_s']}s, "
        f"during the attack {result['page_p95_s_during_attack']}s (worst {result['page_worst_s_during_attack']}s)"
    )
    print(
        f"the attack lasted {result['attack_s']}s; the replicas used {result['replicas_cpu_s_during_attack']}s "
        f"of CPU meanwhile, honest traffic included"
    )
    print(
        f"replicas' RSS: {result['rss_mb_before']} MB before, +{result['rss_growth_mb_warmup']} MB after the "
        f"honest warm-up, +{result['rss_growth_mb_peak']} MB at the peak {result['rss_growth_mb_peak_by_replica']},"
        f" +{result['rss_growth_mb_after']} MB at the end"
    )

    problems = []
    slow = [row for row in crafted if not isinstance(row["status"], int) or row["s"] > GOALS["crafted_s"]]
    if slow:
        problems.append(f"{len(slow)} crafted uploads were not answered within {GOALS['crafted_s']:g}s")
    if args.heavy:
        if any(row["status"] not in (201, 503) and row["code"] != "invalid_photo" for row in crafted):
            problems.append("a heavy upload was answered neither 201, 503 nor 400 invalid_photo")
    elif any(not isinstance(row["status"], int) or not 400 <= row["status"] < 500 for row in crafted):
        problems.append("a crafted upload was not refused with a 4xx")
    if (result["crafted_stored"] and not args.heavy) or result["orphan_photos"] or result["records_without_photo"]:
        problems.append("something crafted was stored, or half-stored (a record or an orphan photo)")
    if result["honest_failed"]:
        problems.append(f"{result['honest_failed']} honest registrations failed")
    worst_during = max(result["honest_worst_s_during_attack"] or 0, result["page_worst_s_during_attack"] or 0)
    if worst_during > GOALS["honest_during_attack_s"]:
        problems.append(f"an honest request during the attack took {worst_during}s")
    if result["page_p95_s"] is None or result["page_p95_s"] >= GOALS["page_p95_s"]:
        problems.append(f"the page's p95 is not under {GOALS['page_p95_s']:g}s")
    if result["rss_growth_mb_peak"] >= GOALS["growth_mb"]:
        problems.append(f"the replicas grew by {GOALS['growth_mb']} MB or more")
    for problem in problems:
        print(f"MISSED: {problem}")
    print(json.dumps(result))
    return 1 if problems else 0


def _statuses(rows) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[str(row["status"])] = counts.get(str(row["status"]), 0) + 1
    return dict(sorted(counts.items()))


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _mb(value: int) -> int:
    return round(value / 1e6)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.hostile_uploads", description=__doc__.split("\n\n")[0])
    parser.add_argument("--crafted", type=int, default=24, help="crafted uploads sent at once (default: %(default)s)")
    parser.add_argument("--honest", type=int, default=4, help="clients registering in a loop (default: %(default)s)")
    parser.add_argument(
        "--pages", type=int, default=4, help="clients loading the page in a loop (default: %(default)s)"
    )
    parser.add_argument("--kind", help="send only the crafted files whose name starts with this (e.g. jpeg-restarts)")
    parser.add_argument(
        "--heavy", action="store_true", help="send the heaviest files the limits accept instead of crafted ones"
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=5,
        help="seconds of honest traffic before the attack, and after it (default: %(default)s)",
    )
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

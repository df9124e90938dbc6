"""The bench's table: one row per figure, with the generator's CPU beside each load figure."""

from __future__ import annotations

HEAD = ("measurement", "cluster", "baseline", "ratio", "goal", "met", "load generator (cores)")


def yes(flag: bool | None) -> str:
    return "" if flag is None else "yes" if flag else "NO"


def _cpu(r: dict) -> str:
    cpu = r.get("generator_cpu")
    if not cpu:
        return ""
    text = f"{cpu['cluster']:.2f} / {cpu['baseline']:.2f}"
    return text + " (saturated!)" if r.get("generator_saturated") else text


def _ratio(r: dict, digits: int = 2) -> str:
    """The median of the pairs' ratios, and their range."""
    text = f"{r['ratio']:.{digits}f}×"
    if len(r.get("pairs", [])) > 1:
        text += f" ({r['range'][0]:.{digits}f}–{r['range'][1]:.{digits}f})"
    return text


def rows(results: dict) -> list[tuple]:
    out = []
    if r := results.get("chart"):
        out.append(
            (
                "chart JSON, cached (req/s)",
                f"{r['cluster']:.0f}",
                f"{r['baseline']:.0f}",
                _ratio(r),
                r["goal"],
                yes(r["met"]),
                _cpu(r),
            )
        )
    if r := results.get("png"):
        out.append(
            (
                "chart PNG, cached (req/s)",
                f"{r['cluster']:.0f}",
                f"{r['baseline']:.0f}",
                _ratio(r),
                r["goal"],
                "",
                _cpu(r),
            )
        )
    if r := results.get("png_after_refresh"):
        out.append(
            (
                f"  {r['concurrent']} PNGs at once after a refresh (ms)",
                f"{r['cluster']:.0f}",
                f"{r['baseline']:.0f}",
                _ratio(r, 1),
                "(reported; baseline: drawn)",
                "",
                "",
            )
        )
    if r := results.get("registration"):
        out.append(
            (
                "registration 400x300 JPEG (req/s)",
                f"{r['cluster']:.1f}",
                f"{r['baseline']:.0f}",
                _ratio(r),
                r["goal"] + ", 0 errors, all stored",
                yes(r["met"]),
                _cpu(r),
            )
        )
        out.append(
            (
                "  errors; acknowledged / stored",
                f"{r['failed']}; {r['acknowledged']} / {r['stored']}",
                "",
                "",
                "",
                "",
                "",
            )
        )
    if r := results.get("report"):
        out.append(
            (
                f"XLSX report, {r['rows']} rows (s)",
                f"{r['cluster']:.2f}",
                f"{r['baseline']:.2f}",
                _ratio(r),
                r["goal"],
                yes(r["met"]),
                "",
            )
        )
        out.append(
            (
                "  time to the report's first byte (s)",
                f"{r['first_byte_s']:.2f}",
                "",
                "",
                r["first_byte_goal"],
                yes(r["first_byte_met"]),
                "",
            )
        )
        out.append(
            (
                "  replica peak memory growth (MB)",
                f"{r['memory_mb']:.1f}",
                "",
                "",
                r["memory_goal"],
                yes(r["memory_met"]),
                "",
            )
        )
    if r := results.get("during"):
        out.append(
            (
                f"registrations during a whole report ({r['clients']} clients), p99 / worst (ms)",
                f"{r['p99_ms']:.0f} / {r['worst_ms']:.0f}",
                "",
                "",
                r["goal"],
                yes(r["met"]),
                "",
            )
        )
        out.append(
            (
                "  registrations; failed; reports broken; chart total = report rows",
                f"{r['registrations']}; {r['failed']}; {r.get('reports_broken', 0)}; {yes(r['chart_equals_report'])}",
                "",
                "",
                "",
                "",
                "",
            )
        )
    if r := results.get("latency"):
        out.append(
            (
                f"registration p99 at {r['rate']:.1f} req/s (ms)",
                f"{r['cluster']:.0f}",
                f"{r['baseline']:.0f}",
                f"{r['ratio']:.1f}×",
                "(reported)",
                "",
                _cpu(r),
            )
        )
    return out


def machine(results: dict) -> str:
    """Per figure: the load average before and after, and the other processes' share of the cores."""
    lines = ["machine during each figure (load average before -> after; other processes' share of the cores):"]
    for name, r in results.items():
        if isinstance(r, dict) and (m := r.get("machine")):
            quiet = "quiet" if m["quiet"] else "NOT quiet"
            lines.append(
                f"  {name:<18} {m['load_avg'][0]:.2f} -> {m['load_avg'][1]:.2f}; {m['others_share']:.0%}; {quiet}"
            )
    return "\n".join(lines)


def table(results: dict) -> str:
    body = [HEAD, *rows(results)]
    widths = [max(len(str(row[i])) for row in body) for i in range(len(HEAD))]
    return "\n".join(
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in body
    )


def header(info: dict, shape: dict, args) -> str:
    shapes = ", ".join(
        f"{name} {s['GUNICORN_WORKERS']} workers x {s['GUNICORN_THREADS']} threads" for name, s in shape.items()
    )
    return (
        f"machine: {info['cores']} cores ({info['cpu']}), {info['memory_gib']} GiB, Linux {info['kernel']},"
        f" Python {info['python']}\n"
        f"gunicorn (gthread) per process, baseline alike: {shapes}; wrk: {args.threads} threads,"
        f" {args.connections} connections{f', nice {args.nice}' if args.nice else ''}, {args.duration:g} s after"
        f" {args.warmup:g} s warm-up; ratios: median (range) of {args.runs} interleaved pairs"
        f" (report: {args.report_runs})"
    )

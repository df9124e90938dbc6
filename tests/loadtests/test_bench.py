"""The bench's pure parts: the percentile, ratios, verdicts, the form it sends and its table."""

import math

import pytest
from werkzeug.formparser import parse_form_data
from werkzeug.test import EnvironBuilder

from common.stats import percentile
from loadtests.bench import figures, printing, verdicts
from loadtests.bench.load import saturated


def test_percentile_is_the_nearest_rank():
    assert math.isnan(percentile([], 50))
    assert percentile([5.0], 1) == percentile([5.0], 100) == 5.0
    assert percentile(range(1, 101), 95) == 95
    assert percentile(range(1, 101), 7) == 7  # 7/100*100 in floats is 7.000000000000001
    assert percentile(range(1, 1001), 99.9) == 999
    assert percentile(range(1, 21), 95) == 19
    assert percentile([3, 1, 2], 50) == 2  # any order in
    assert percentile([1, 2, 3, 4], 50) == 2  # a value held, never interpolated (2.5)
    with pytest.raises(ValueError):
        percentile([1], 0)


def test_ratio_and_verdicts():
    assert verdicts.ratio(40, 50) == 0.8
    assert math.isnan(verdicts.ratio(40, 0)) and math.isnan(verdicts.ratio(math.nan, 10))
    assert verdicts.met("chart", 0.8) and not verdicts.met("chart", 0.79)
    assert verdicts.met("report", 0.7) and not verdicts.met("report", 0.71)  # a time: lower is better
    assert verdicts.met("during_report_p99_ms", 300) and not verdicts.met("during_report_worst_ms", 1001)
    assert verdicts.met("first_byte_s", 2.0) and not verdicts.met("first_byte_s", 2.5)
    assert not verdicts.met("report_memory_mb", 150)
    assert not verdicts.met("chart", math.nan)  # nothing measured meets nothing
    assert verdicts.met("png", 0.1) is None
    assert verdicts.goal_text("registration") == "≥ 0.25×" and verdicts.goal_text("png") == "(reported)"


def test_the_ratio_is_the_median_of_the_pairs_with_their_range():
    summary = verdicts.summarize("chart", [900, 1000, 5000, 800, 950], [1000, 1200, 1250, 1000, 1000])
    assert summary["cluster"] == 950 and summary["baseline"] == 1000
    assert summary["pairs"] == [0.9, 0.833, 4.0, 0.8, 0.95]
    assert summary["ratio"] == pytest.approx(0.9) and summary["met"] is True
    assert summary["range"] == [0.8, 4.0]
    assert summary["runs"]["cluster"] == [900, 1000, 5000, 800, 950]
    assert verdicts.summarize("report", [30, 31, 32], [20, 20, 20])["met"] is False


def test_lost_registrations_are_the_acknowledged_ones_not_stored():
    assert verdicts.lost_registrations(["a", "b", "c"], {"a", "c", "z"}) == ["b"]
    assert verdicts.lost_registrations([], set()) == []


def test_the_generator_is_flagged_near_its_limit():
    assert saturated({"generator_cpu": 1.7, "threads": 2})
    assert not saturated({"generator_cpu": 0.5, "threads": 2})


def test_the_registration_form_is_a_browser_like_multipart_form():
    name = figures.new_name("max")
    assert name.replace(" ", "").isalpha()
    body, content_type = figures.registration_form(name, b"\xff\xd8jpeg", city="Cuenca")
    environ = EnvironBuilder(method="POST", data=body, content_type=content_type).get_environ()
    _, form, files = parse_form_data(environ)
    assert form["name"] == name and form["city"] == "Cuenca"
    assert files["photo"].filename == "id-card.jpg" and files["photo"].mimetype == "image/jpeg"
    assert files["photo"].read() == b"\xff\xd8jpeg"


def test_the_table_has_a_row_per_figure_with_the_generator_beside_the_load_figures():
    results = {
        "chart": {**verdicts.summarize("chart", [1600], [2000]), "generator_cpu": {"cluster": 0.4, "baseline": 0.5}},
        "registration": {
            **verdicts.summarize("registration", [500], [2000]),
            "failed": 0,
            "acknowledged": 10,
            "stored": 10,
            "generator_cpu": {"cluster": 0.2, "baseline": 1.9},
            "generator_saturated": True,
        },
        "report": {
            **verdicts.summarize("report", [12.0], [10.0]),
            "rows": 230000,
            "first_byte_s": 0.4,
            "first_byte_goal": "≤ 2 s",
            "first_byte_met": True,
            "memory_mb": 3.0,
            "memory_goal": "< 150 MB",
            "memory_met": True,
        },
    }
    lines = printing.table(results).splitlines()
    assert lines[0].startswith("measurement")
    chart = next(line for line in lines if line.startswith("chart JSON"))
    assert "0.80×" in chart and "yes" in chart and "0.40 / 0.50" in chart
    registration = next(line for line in lines if line.startswith("registration"))
    assert "0.25×" in registration and "(saturated!)" in registration
    assert any(line.startswith("  time to the report's first byte") and "0.40" in line for line in lines)
    assert any(line.startswith("XLSX report, 230000 rows") and "1.20×" in line for line in lines)

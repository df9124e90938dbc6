"""The chart PNG: any city name renders literally, and thousands of cities stay one small picture."""

import io
import time

from PIL import Image

from middleware import chart_image


def _chart(cities):
    return {"cities": cities, "total": sum(c["total"] for c in cities), "generated_at": "2026-01-01T00:00:00+00:00"}


def test_dollar_signs_in_city_names_are_drawn_as_text_not_mathtext():
    # an odd "$", and a pair around something mathtext cannot parse: both raised before
    names = ["Cost $5", "Pay $x^$ now", r"Back\slash $\frac$"]
    chart = _chart([{"city": name, "total": n} for n, name in enumerate(names, 1)])
    figure = chart_image.figure(chart)
    assert [label.get_text() for label in figure.axes[0].get_yticklabels()] == names[::-1]
    assert Image.open(io.BytesIO(chart_image.render(chart))).format == "PNG"


def test_many_cities_become_the_largest_ones_and_one_other_bar():
    cities = [{"city": f"City {n:04d}", "total": n} for n in range(1, 5001)]
    rows = chart_image.bars(cities)
    assert len(rows) == chart_image.MAX_BARS
    kept = rows[:-1]
    assert [name for name, _ in kept] == [f"City {n:04d}" for n in range(5001 - len(kept), 5001)]
    assert rows[-1] == (f"Other ({5000 - len(kept)} cities)", sum(range(1, 5001 - len(kept))))
    assert sum(total for _, total in rows) == sum(range(1, 5001))

    started = time.perf_counter()
    png = chart_image.render(_chart(cities))
    assert time.perf_counter() - started < 5
    assert Image.open(io.BytesIO(png)).height < 2000


def test_few_cities_are_drawn_as_they_are():
    cities = [{"city": "Quito", "total": 3}, {"city": "Cuenca", "total": 5}]
    assert chart_image.bars(cities) == [("Quito", 3), ("Cuenca", 5)]
    assert chart_image.bars([]) == []
    assert Image.open(io.BytesIO(chart_image.render(_chart([])))).format == "PNG"


def test_long_names_sharing_a_prefix_keep_distinct_short_labels_and_a_sane_picture():
    prefix = "Ciudad de nombre muy largo que comparte un prefijo " * 4
    cities = [{"city": f"{prefix}{n}", "total": n} for n in range(1, 3001)]
    chart = _chart(cities)
    labels = [label.get_text() for label in chart_image.figure(chart).axes[0].get_yticklabels()]
    assert len(labels) == chart_image.MAX_BARS
    assert all(len(label) <= chart_image.LABEL_MAX for label in labels)
    assert len(set(labels)) == len(labels)
    assert any(label.endswith("prefijo 3000") for label in labels)  # the largest, told apart by its end
    assert labels[0] == f"Other ({3000 - chart_image.MAX_BARS + 1} cities)"
    width, height = Image.open(io.BytesIO(chart_image.render(chart))).size
    assert width <= 1000 and height < 2000

"""City totals for thousands of cities: no query grows with the number of cities."""

from common import records


class FakeCollection:
    """Just the reads city_totals makes, recording how many keys each look-up carries."""

    def __init__(self, rows=(), totals=()):
        self.rows = {row["_id"]: row for row in rows}
        self.totals = list(totals)
        self.keys_per_query: list[int] = []

    def aggregate(self, pipeline):
        return iter(self.totals)

    def find(self, query, projection=None):
        keys = query["_id"]["$in"]
        self.keys_per_query.append(len(keys))
        return [self.rows[key] for key in keys if key in self.rows]


def test_display_names_of_thousands_of_cities_are_read_in_bounded_batches():
    prefix = "ciudad de nombre muy largo que comparte un prefijo " * 4
    keys = [f"{prefix}{n}" for n in range(3000)]
    cities = FakeCollection(rows=[{"_id": key, "city": key.title()} for key in keys if not key.endswith("7")])
    registrations = FakeCollection(totals=[{"_id": key, "total": 1} for key in keys] + [{"_id": None, "total": 2}])
    totals = records.city_totals({records.REGISTRATIONS: registrations, records.CITIES: cities})

    assert len(totals) == 3000
    assert max(cities.keys_per_query) <= records.NAMES_BATCH
    assert sum(cities.keys_per_query) == 3000
    assert all(row["city"] == row["city_key"].title() for row in totals)  # found, or the key's own spelling
    assert [row["city"].casefold() for row in totals] == sorted(row["city"].casefold() for row in totals)

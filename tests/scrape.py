"""What a service's /metrics says, read with prometheus_client's own parser."""

import requests
from prometheus_client.parser import text_string_to_metric_families


def metric_sum(url: str, name: str, **labels: str) -> float:
    """The sum of the samples called `name` (with these label values, if given) at `url`."""
    text = requests.get(url, timeout=5).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(key) == value for key, value in labels.items())
    )

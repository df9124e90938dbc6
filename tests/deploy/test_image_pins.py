"""Image pins: one tag per image across compose, Kubernetes and the Dockerfile, and each one
listed in docs/deployment.md ("Pinned images") with the release it was checked against."""

import re

import pytest
from deploytools import OVERLAYS, repo_file

# our own images (built here, tagged by the overlays) are not pins of someone else's release
OWN = re.compile(r"^(vaccination-|registry\.example\.org/)")


def documented_pins() -> dict[str, str]:
    text = repo_file("docs/deployment.md").read_text()
    section = text.split("## Pinned images", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| ([a-z0-9/_.-]+) \| ([A-Za-z0-9_.-]+) \| (.+?) \|$", section, re.M)
    pins = {image: tag for image, tag, checked in rows if checked.strip() and image != "image"}
    assert pins, "docs/deployment.md lists no pinned images"
    return pins


def _split(reference: str) -> tuple[str, str]:
    image, _, tag = reference.rpartition(":")
    return image, tag


def used_images(compose: dict, rendered: dict[str, list[dict]]) -> dict[str, set[tuple[str, str]]]:
    """image -> {(tag, where)} for every image reference we ship."""
    used: dict[str, set[tuple[str, str]]] = {}

    def add(reference: str, where: str) -> None:
        if OWN.match(reference):
            return
        image, tag = _split(reference)
        used.setdefault(image, set()).add((tag, where))

    for name, service in compose["services"].items():
        if "build" not in service:
            add(service["image"], f"docker-compose.yml:{name}")
    for overlay in OVERLAYS:
        for obj in rendered[overlay]:
            template = obj.get("spec", {}).get("template", {}).get("spec")
            if not template:
                continue
            for container in template.get("initContainers", []) + template["containers"]:
                add(container["image"], f"k8s/overlays/{overlay}:{obj['metadata']['name']}/{container['name']}")
    dockerfile = repo_file("Dockerfile").read_text()
    add(re.search(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile, re.M)[1], "Dockerfile")
    return used


def test_every_image_has_one_tag_everywhere(compose, rendered):
    for image, uses in used_images(compose, rendered).items():
        tags = {tag for tag, _ in uses}
        assert len(tags) == 1, f"{image} is pinned to {sorted(tags)}: {sorted(uses)}"
        (tag,) = tags
        assert tag and tag != "latest", f"{image} is not pinned"


def test_every_pin_is_the_checked_one(compose, rendered):
    pins = documented_pins()
    for image, uses in used_images(compose, rendered).items():
        assert image in pins, f"{image} is not in docs/deployment.md's pinned images"
        for tag, where in uses:
            assert tag == pins[image], f"{where} uses {image}:{tag}, the checked pin is {pins[image]}"


def test_no_pin_is_listed_that_nothing_uses(compose, rendered):
    unused = set(documented_pins()) - set(used_images(compose, rendered))
    assert not unused, f"docs/deployment.md lists pins nothing uses: {sorted(unused)}"


@pytest.mark.parametrize(
    "reference,expected",
    [("nginx:1.30.5-alpine", ("nginx", "1.30.5-alpine")), ("prom/prometheus:v3.5.0", ("prom/prometheus", "v3.5.0"))],
)
def test_split(reference, expected):
    assert _split(reference) == expected

"""Fill `${UPPER_CASE}` placeholders in configuration templates (nginx, Alertmanager).

The same convention as the nginx image's envsubst: only upper-case names are placeholders,
so nginx's own `$host`/`${request_id}` and Go's `{{ }}` templates pass through untouched.
A placeholder without a value is an error, never an empty string: an empty smarthost or
upstream address would start a part that silently does nothing.
"""

import re
from collections.abc import Mapping

PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")


class MissingValues(KeyError):
    def __init__(self, names: list[str]):
        self.names = names
        super().__init__(f"no value for placeholder(s): {', '.join('${' + name + '}' for name in names)}")

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return self.args[0]


def render(text: str, values: Mapping[str, str]) -> str:
    missing = sorted({name for name in PLACEHOLDER.findall(text) if name not in values})
    if missing:
        raise MissingValues(missing)
    return PLACEHOLDER.sub(lambda match: str(values[match.group(1)]), text)

"""Fill `${UPPER_CASE}` placeholders in configuration templates (nginx, Alertmanager).

The same convention as the nginx image's envsubst: only upper-case names are placeholders,
so nginx's own `$host`/`${request_id}` and Go's `{{ }}` templates pass through untouched.
A placeholder without a value is an error, never an empty string: an empty smarthost or
upstream address would start a part that silently does nothing. A value with a line break or
another control character is an error too in configuration: it could end a directive and start
another (documents, such as a drill's post-mortem, pass prose=True). Secrets are checked for
their own form where they are read (stack/settings.py).
"""

import re
from collections.abc import Mapping

PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class MissingValues(KeyError):
    def __init__(self, names: list[str]):
        self.names = names
        super().__init__(f"no value for placeholder(s): {', '.join('${' + name + '}' for name in names)}")

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return self.args[0]


def render(text: str, values: Mapping[str, str], prose: bool = False) -> str:
    missing = sorted({name for name in PLACEHOLDER.findall(text) if name not in values})
    if missing:
        raise MissingValues(missing)
    unsafe = [] if prose else sorted({n for n in PLACEHOLDER.findall(text) if CONTROL.search(str(values[n]))})
    if unsafe:
        raise ValueError(f"a line break or control character in the value of: {', '.join(unsafe)}")
    return PLACEHOLDER.sub(lambda match: str(values[match.group(1)]), text)

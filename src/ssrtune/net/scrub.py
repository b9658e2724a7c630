"""Text from outside (a server's error body, an exception from its client library) made safe to print and to store:
terminal control sequences removed, secrets redacted in every form a message may carry them, then cut short.

The order matters. Control sequences go first, so that one hidden inside a secret cannot split it past the redaction;
the secret goes before the text is cut, so that a cut cannot leave its head outside the part that is searched.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

# ESC [ ... (CSI: colours, cursor moves, erasing), ESC ] ... BEL or ESC \ (OSC: the window title, hyperlinks, the
# clipboard), any other ESC pair, and the remaining C0 and C1 control characters.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]?|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b.?|[\x80-\x9f]", re.S)
_CONTROLS = re.compile(r"[\x00-\x1f\x7f]")
# A secret's head this long or longer counts as the secret: a server that cuts what it echoes ("sk-proj-AbC...")
# still shows that much, and ordinary words do not start with 8 characters of a key.
MIN_SECRET_HEAD = 8
REDACTED = "***"


def secret_forms(secret: str) -> set[str]:
    """`secret` as a message may carry it: as it is, or escaped by `repr` of a string or of bytes (httpx reports a
    bad header as `b'Bearer ...'`), or by JSON."""
    return {secret, repr(secret)[1:-1], repr(secret.encode("utf-8", "backslashreplace"))[2:-1],
            json.dumps(secret)[1:-1]}


def _match(text: str, at: int, form: str) -> int:
    """How much of `form` `text` holds from `at`: all of it, or a head of MIN_SECRET_HEAD characters or more (what a
    cut left of it); else 0."""
    length = 0
    while length < len(form) and at + length < len(text) and text[at + length] == form[length]:
        length += 1
    return length if length >= min(len(form), MIN_SECRET_HEAD) else 0


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with each run that is a secret, in one of its forms, or what a cut left of it, replaced. Where several
    forms match at one place (they share their head), the longest run goes."""
    for secret in filter(None, secrets):
        forms = secret_forms(secret)
        heads = {form[:MIN_SECRET_HEAD] for form in forms}
        parts, start = [], 0
        while True:
            found = [at for at in (text.find(head, start) for head in heads) if at >= 0]
            if not found:
                break
            at = min(found)
            length = max(_match(text, at, form) for form in forms)
            parts += [text[start:at], REDACTED]
            start = at + length
        text = "".join(parts) + text[start:]
    return text


def safe_text(text: str, secrets: Iterable[str] = (), limit: int = 200) -> str:
    """`text` without control sequences, with `secrets` redacted, on one line, and at most `limit` characters."""
    text = _CONTROLS.sub(" ", _ESCAPES.sub("", text))
    text = " ".join(redact(text, secrets).split())
    return text if len(text) <= limit else text[:limit] + "..."

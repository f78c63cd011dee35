"""Keeping mixed-direction text readable: isolates around what participants wrote, left to right
for what we state.

The Unicode bidi algorithm lets a right-to-left run pull neighbouring neutrals (brackets, ``+``,
spaces) and numbers into it, so an Arabic name before ``(+447700900201)`` makes the number read
backwards. An *isolate* stops that: its content is laid out on its own and counts as one neutral
character outside. Values that come from a participant or a chat (names, chat names, message text,
file names) are isolated with their direction left to the content (FSI); phone numbers, addresses,
ids and times are isolated left to right (LRI). Text parts and headers carry the isolate characters
themselves; HTML carries the same structure as ``<bdi>`` and ``<bdi dir="ltr">`` (``to_html``), so
the HTML's searchable text gains no character. Why here and not in each renderer: docs/rendering.md.
"""

from __future__ import annotations

import re

LRI = "\u2066"  # left-to-right isolate
RLI = "\u2067"  # right-to-left isolate
FSI = "\u2068"  # first-strong isolate: direction from the content's first strong character
PDI = "\u2069"  # pop directional isolate
LRE, RLE, PDF, LRO, RLO = "\u202a", "\u202b", "\u202c", "\u202d", "\u202e"

_INITIATORS = frozenset((LRI, RLI, FSI))
_EMBEDDINGS = frozenset((LRE, RLE, LRO, RLO))
_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")



def balanced(text: str) -> str:
    """``text`` closed on itself: a pop with nothing to pop is dropped, and whatever it opens and
    leaves open is closed at its end. Shown alone in a paragraph it reads exactly as before (the
    algorithm closes everything at a paragraph's end and ignores unmatched pops), but wrapped in an
    isolate of ours it can no longer end ours early or leak past it."""
    out: list[str] = []
    stack: list[str] = []  # "i" for an isolate, "e" for an embedding or override
    start = 0  # only the controls are looked at: the text between them is copied in slices
    for match in _CONTROLS.finditer(text):
        char = match.group()
        if char in _INITIATORS:
            stack.append("i")
        elif char in _EMBEDDINGS:
            stack.append("e")
        elif char == PDI:
            if "i" not in stack:
                out.append(text[start:match.start()])
                start = match.end()
                continue
            # A PDI also closes the embeddings opened inside its isolate (UBA X6a).
            while stack.pop() != "i":
                pass
        elif not stack or stack[-1] != "e":  # a PDF with no embedding of its own to close
            out.append(text[start:match.start()])
            start = match.end()
            continue
        else:
            stack.pop()
    if not out and not stack:
        return text  # already balanced: nothing dropped, nothing left open
    out.append(text[start:])
    out.extend(PDI if kind == "i" else PDF for kind in reversed(stack))
    return "".join(out)


def isolate(text: str) -> str:
    """A participant's or a chat's value, isolated with the direction its own text gives it."""
    return f"{FSI}{balanced(text)}{PDI}" if text else text


def ltr(text: str) -> str:
    """A value that reads left to right whatever surrounds it: a phone number, an address, an id, a time."""
    return f"{LRI}{balanced(text)}{PDI}" if text else text


def strip_isolates(text: str) -> str:
    """``text`` without any directional control: what a search for it, or a comparison, should see."""
    return _CONTROLS.sub("", text)


def to_html(escaped: str) -> str:
    """HTML-escaped text whose isolates become elements: FSI … PDI → ``<bdi>…</bdi>``, LRI / RLI …
    PDI → ``<bdi dir="ltr">`` / ``<bdi dir="rtl">``. Balanced first, so the elements always nest;
    one element for every isolate, so each PDI closes the same tag; embeddings and overrides stay
    as characters (the browser applies them inside their element)."""
    if FSI not in escaped and LRI not in escaped and RLI not in escaped:
        return escaped.replace(PDI, "")
    return (balanced(escaped).replace(FSI, "<bdi>").replace(LRI, '<bdi dir="ltr">')
            .replace(RLI, '<bdi dir="rtl">').replace(PDI, "</bdi>"))

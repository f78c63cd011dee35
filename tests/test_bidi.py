"""Isolates: a participant's text closed on itself so it can neither end our isolate early nor leak
past it, and the same structure carried into HTML as elements that always nest."""

from __future__ import annotations

import html
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.domain.bidi import FSI, LRE, LRI, PDF, PDI, RLO, balanced, isolate, ltr, strip_isolates, to_html

NAME = "فاطمة الصالح"


def test_an_isolate_wraps_a_name_and_a_phone_reads_left_to_right():
    assert isolate(NAME) == f"{FSI}{NAME}{PDI}"
    assert ltr("+447700900201") == f"{LRI}+447700900201{PDI}"
    assert isolate("") == "" and ltr("") == ""


def test_a_stray_pop_in_a_name_cannot_end_our_isolate_early():
    assert isolate(f"evil{PDI} tail") == f"{FSI}evil tail{PDI}"
    assert balanced(f"x{PDF}y") == "xy"


def test_what_a_name_opens_is_closed_before_our_isolate_ends():
    assert isolate(f"{RLO}abc") == f"{FSI}{RLO}abc{PDF}{PDI}"
    assert balanced(f"{FSI}a{LRE}b") == f"{FSI}a{LRE}b{PDF}{PDI}"


def test_a_pop_closes_the_embeddings_opened_inside_its_isolate():
    # UBA X6a: the PDI ends the LRE too; nothing is left open after it.
    assert balanced(f"{FSI}a{LRE}b{PDI}c") == f"{FSI}a{LRE}b{PDI}c"


def test_text_without_controls_is_returned_as_it_is():
    text = "plain text, (+44) <a@b.c>"
    assert balanced(text) is text


def test_html_isolates_become_bdi_elements_with_their_direction():
    text = f"From: {isolate(NAME)} ({ltr('+447700900201')}) <{ltr('a@example.com')}>"
    assert to_html(html.escape(text)) == (
        f"From: <bdi>{NAME}</bdi> (<bdi dir=\"ltr\">+447700900201</bdi>) "
        "&lt;<bdi dir=\"ltr\">a@example.com</bdi>&gt;"
    )


def test_html_closes_what_the_text_left_open_and_drops_stray_pops():
    assert to_html(f"a{FSI}b") == "a<bdi>b</bdi>"
    assert to_html(f"a{PDI}b") == "ab"


def test_strip_isolates_gives_the_text_a_search_sees():
    assert strip_isolates(f"from {isolate(NAME)} ({ltr('+447700900201')})") == f"from {NAME} (+447700900201)"


_BIDI = st.sampled_from(["a", " ", "ש", "ع", "1", FSI, LRI, PDI, LRE, RLO, PDF])


@given(st.lists(_BIDI, max_size=30).map("".join))
def test_balanced_text_never_pops_more_than_it_opens_and_closes_everything(text):
    out = balanced(text)
    stack = []
    for char in out:
        if char in (FSI, LRI):
            stack.append("isolate")
        elif char in (LRE, RLO):
            stack.append("embedding")
        elif char == PDI:  # closes its isolate and whatever was embedded inside it (UBA X6a)
            assert "isolate" in stack
            while stack.pop() != "isolate":
                pass
        elif char == PDF:
            assert stack and stack.pop() == "embedding"
    assert not stack
    assert strip_isolates(out) == strip_isolates(text), "only controls change"


@given(st.lists(_BIDI, max_size=30).map("".join))
def test_html_tags_always_nest(text):
    out = to_html(text)
    stack = []
    for match in re.finditer(r"<(/?)(bdi)", out):
        closing, name = match.groups()
        if closing:
            assert stack and stack.pop() == name
        else:
            stack.append(name)
    assert not stack


@pytest.mark.parametrize("value", ["", "abc", NAME])
def test_wrapping_twice_keeps_the_text(value):
    assert strip_isolates(isolate(isolate(value))) == value

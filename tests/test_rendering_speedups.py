"""The shortcuts rendering takes for speed (bench figure (a)) give what the long way gives.

The golden, size and Graph body tests hold the outputs whole; these hold each shortcut to the
standard library code it stands in for, over inputs no generated record reaches.
"""

from __future__ import annotations

from email import quoprimime
from email.policy import SMTP

from hypothesis import example, given, settings
from hypothesis import strategies as st

from shared.domain.rendered import (
    MailAddress,
    _addresses,
    _fold_mailboxes,
    _fold_text,
    _folded_mailboxes_size,
    _folded_text_size,
    _qp_body_size,
    _qp_shape,
)

# Bytes that reach every branch of quoted-printable's line breaking: "=" and blanks where a line
# is cut, "%" (the quoting's template character), line breaks of every kind, long runs.
QP_PIECES = [b"a", b"=", b" ", b"\t", b"%", b"%s", b"\r\n", b"\n", b"\r", b"\xff", b"\x00", "é".encode(),
             "😀".encode(), b"x" * 70, b"y" * 77, b"=" * 30, b" \n", b"\t\r\n"]
qp_bodies = st.one_of(
    st.binary(max_size=600),
    st.lists(st.sampled_from(QP_PIECES), max_size=80).map(b"".join),
)


def test_every_byte_is_quoted_where_the_package_quotes_it():
    for octet in range(256):
        data = bytes([octet])
        quoted = data.decode("latin-1").translate(quoprimime._QUOPRI_BODY_ENCODE_MAP)
        assert _qp_shape(data) == (b"=00" if quoted.startswith("=") else quoted.encode("ascii"))


@settings(max_examples=1000, deadline=None)
@given(data=qp_bodies, maxlinelen=st.sampled_from([4, 5, 76, 78]))
@example(data=b"%s=%%" * 40 + b" \r\n", maxlinelen=78)
@example(data=b"", maxlinelen=78)
def test_quoted_printable_is_measured_as_the_package_encodes(data, maxlinelen):
    encoded = quoprimime.body_encode(data.decode("latin-1"), maxlinelen)
    assert _qp_body_size(data, maxlinelen) == (len(encoded), encoded.count("\n"))


names = st.one_of(st.text(max_size=80), st.sampled_from(["Alice", "José Núñez (+447700900123)", "山田太郎", ""]))


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(["Subject", "Thread-Topic"]), value=names)
def test_a_measured_header_is_the_length_of_its_fold(name, value):
    try:
        folded = _fold_text(name, value, SMTP)
    except UnicodeEncodeError:  # a lone surrogate: the size check measures such an item the long way
        return
    assert _folded_text_size(name, value) == (len(folded), folded.isascii())


@settings(max_examples=300, deadline=None)
@given(people=st.lists(st.tuples(names, st.sampled_from(["a@example.com", "+447700900123@whatsapp.invalid"])),
                       min_size=1, max_size=4))
def test_measured_mailboxes_are_the_length_of_their_fold(people):
    mailboxes = tuple(MailAddress(display, address) for display, address in people)
    try:
        folded = _fold_mailboxes("To", _addresses(mailboxes), SMTP)
    except (UnicodeEncodeError, ValueError):
        return
    assert _folded_mailboxes_size("To", mailboxes) == (len(folded), folded.isascii())

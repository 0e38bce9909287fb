"""What identifies a message on the destination survives what servers do to it."""

from __future__ import annotations

from apps.sync.engine.fingerprint import fingerprint, match_present

HEADER = (
    b"Message-ID: <abc.123@example.com>\r\nDate: Tue, 03 Mar 2020 10:00:00 +0100\r\n"
    b"From: =?utf-8?q?Ren=C3=A9?= <rene@example.com>\r\nSubject: Gr\xc3\xbc\xc3\x9fe\r\n\r\n"
)
DATE = "03-Mar-2020 09:00:00 +0000"


def test_an_estimated_size_and_a_rewritten_8bit_header_still_identify_the_message():
    original = fingerprint(1000, DATE, HEADER)
    munged = HEADER.replace(b"\xc3\xbc\xc3\x9f", b"XXXX")  # what Cyrus stores
    redated = b"Date: Tue, 3 Mar 2020 09:00:00 +0000\r\n".join(
        HEADER.split(b"Date: Tue, 03 Mar 2020 10:00:00 +0100\r\n")
    )
    for copy in (fingerprint(1013, DATE, munged), fingerprint(987, "03-Mar-2020 10:00:00 +0100", redated)):
        matched, remaining = match_present([(7, original)], [copy])
        assert matched == {7} and remaining == []


def test_another_message_id_or_date_is_another_message():
    original = fingerprint(1000, DATE, HEADER)
    other_id = fingerprint(1000, DATE, HEADER.replace(b"abc.123", b"abc.124"))
    other_date = fingerprint(1000, DATE, HEADER.replace(b"10:00:00", b"10:00:01"))
    assert match_present([(1, original)], [other_id, other_date]) == (set(), [other_id, other_date])


def test_without_a_message_id_the_start_of_the_body_tells_messages_apart():
    header = HEADER.replace(b"Message-ID: <abc.123@example.com>\r\n", b"")
    first = fingerprint(500, DATE, header, b"Hello Bob,\r\nsee you\r\n")
    second = fingerprint(500, DATE, header, b"Hello Alice,\r\nsee you\r\n")
    stored = fingerprint(503, DATE, header, b"Hello Bob,\nsee you\n")  # line ends normalised
    assert match_present([(1, first), (2, second)], [stored])[0] == {1}


def test_exact_duplicates_are_counted_as_a_multiset():
    fp = fingerprint(1000, DATE, HEADER)
    matched, _ = match_present([(1, fp), (2, fp), (3, fp)], [fp, fp])
    assert len(matched) == 2  # one of the three is still to be copied


def test_when_fewer_copies_are_there_the_closest_source_message_is_taken_as_copied():
    """A sent copy and a received copy share a Message-ID: the one on the destination is the one
    whose header bytes, date and size it matches, whatever order they come in."""
    sent = fingerprint(1200, DATE, HEADER)
    received_header = b"Received: from mx by mail\r\n" + HEADER
    received = fingerprint(1900, "04-Mar-2020 09:00:00 +0000", received_header)
    copy_of_received = fingerprint(1905, "04-Mar-2020 09:00:00 +0000", received_header)
    assert match_present([(1, sent), (2, received)], [copy_of_received])[0] == {2}
    assert match_present([(2, received), (1, sent)], [copy_of_received])[0] == {2}

"""Property-based tests of folder-name mapping: any Unicode name, any hierarchy separator."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from apps.sync.engine.folders import Listing, Namespace, _path, decode_name, dest_name_for, encode_name, safe_part

SEPARATORS = st.sampled_from(["/", ".", "\\", ":", "|"])
# Folder name parts as mail clients create them: any script, no control characters, not empty.
PART = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")),
    min_size=1,
    max_size=30,
).filter(lambda part: part.strip() and part.upper() != "INBOX")
PATH = st.lists(PART, min_size=1, max_size=4).map(tuple)


def listing(separator: str, prefix: str = "") -> Listing:
    return Listing(folders=[], namespace=Namespace(prefix=prefix, separator=separator))


@given(name=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60))
def test_any_name_round_trips_through_modified_utf7(name):
    raw = encode_name(name)
    assert decode_name(raw) == name
    # What goes on the wire is printable 7-bit ASCII: nothing that could end or split a command.
    assert all(0x20 <= byte < 0x7F for byte in raw), raw


@given(path=PATH, source_separator=SEPARATORS, destination_separator=SEPARATORS, prefixed=st.booleans())
def test_a_folder_keeps_its_place_in_the_hierarchy_whatever_the_separators(
    path, source_separator, destination_separator, prefixed
):
    source_prefix = "INBOX" + source_separator if prefixed else ""
    # A part holding the source's own separator cannot exist on the source: it would be two levels.
    path = tuple(part.replace(source_separator, "_") for part in path)
    source_name = source_prefix + source_separator.join(path)
    parsed = _path(source_name, source_separator, Namespace(source_prefix, source_separator))
    assert parsed == path

    destination = listing(destination_separator, "INBOX" + destination_separator if not prefixed else "")
    name, changed = dest_name_for(parsed, destination)
    back = _path(name, destination_separator, destination.namespace)
    assert len(back) == len(path), (name, back)  # same depth: no part split, none merged
    clean = all(destination_separator not in part and part not in (".", "..") for part in path)
    assert changed == (not clean)
    if clean:
        assert back == path  # e.g. INBOX.Archive.2020 <-> Archive/2020, letter for letter
    else:
        assert all(part not in (".", "..") for part in back)


@given(part=st.text(max_size=200))
def test_the_fallback_spelling_of_a_refused_name_is_always_acceptable(part):
    safe = safe_part(part)
    assert 1 <= len(safe) <= 80
    assert re.fullmatch(r"[\w \-]+", safe)
    assert safe not in (".", "..")

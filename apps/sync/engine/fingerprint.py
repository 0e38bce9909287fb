"""Message fingerprints: recognise a message already on the destination without its UID.

Size + INTERNALDATE (as an instant) + a hash of a few identifying header fields.  Compared as a
multiset, so that exact duplicates inside a folder are each accounted for once.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from datetime import datetime

FINGERPRINT_HEADERS = b"MESSAGE-ID DATE FROM TO SUBJECT"
FINGERPRINT_FETCH = b"(UID RFC822.SIZE INTERNALDATE BODY.PEEK[HEADER.FIELDS (" + FINGERPRINT_HEADERS + b")])"

Fingerprint = tuple[int, int, str]


def internaldate_epoch(value: str) -> int:
    return int(datetime.strptime(value.strip(), "%d-%b-%Y %H:%M:%S %z").timestamp())


def header_digest(header_block: bytes) -> str:
    # Normalise line endings and folding so that a server that re-wraps stored headers still matches.
    unfolded = re.sub(rb"\r?\n[ \t]+", b" ", header_block)
    lines = sorted(line.strip().lower() for line in re.split(rb"\r?\n", unfolded) if line.strip())
    return hashlib.sha256(b"\n".join(lines)).hexdigest()[:32]


def fingerprint(size: int, internaldate: str, header_block: bytes) -> Fingerprint:
    return (size, internaldate_epoch(internaldate), header_digest(header_block))


def match_present(candidates: list[tuple[int, Fingerprint]], present: Counter) -> tuple[set[int], Counter]:
    """Source (uid, fingerprint) pairs already on the destination, consuming `present` as a
    multiset so that N source duplicates are matched by at most N destination copies."""
    remaining = Counter(present)
    matched = set()
    for uid, fp in candidates:
        if remaining[fp] > 0:
            remaining[fp] -= 1
            matched.add(uid)
    return matched, remaining

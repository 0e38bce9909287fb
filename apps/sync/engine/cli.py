"""Command line: python -m apps.sync.engine.cli SRC_URL DST_URL --state FILE

URLs look like imap+plain://user@host:143, imap+starttls://..., imaps://user@host:993.
Passwords come from IMAPCOPY_SOURCE_PASSWORD / IMAPCOPY_DEST_PASSWORD, never from the URL.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import asdict

from .checkpoints import JsonFileCheckpointStore, MemoryCheckpointStore
from .copier import copy_mailbox
from .model import CopyOptions, Endpoint, Event, Progress
from .urls import SCHEMES, URLError, parse_imap_url


def parse_endpoint(url: str, password: str, args: argparse.Namespace, source: bool = False) -> Endpoint:
    try:
        parsed = parse_imap_url(url)
    except URLError as exc:
        raise SystemExit(
            {
                "scheme": f"unsupported URL scheme {exc.scheme!r} (use {', '.join(SCHEMES)})",
                "password": "put passwords in the environment, not in the URL",
            }.get(exc.reason, "the port is not a number between 1 and 65535")
        ) from None
    return Endpoint(
        host=parsed.host,
        port=parsed.port,
        security=parsed.security,
        login=parsed.login,
        password=password,
        ca_file=args.ca_file,
        verify_tls=not args.insecure,
        timeout=args.timeout,
        max_messages_per_second=args.max_messages_per_second if source else None,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m apps.sync.engine.cli", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("source")
    ap.add_argument("destination")
    ap.add_argument("--state", help="JSON checkpoint file (resume / incremental reruns)")
    ap.add_argument("--ca-file")
    ap.add_argument("--insecure", action="store_true", help="do not verify TLS certificates")
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--batch-mb", type=float, default=2.0)
    ap.add_argument("--max-message-mb", type=float)
    ap.add_argument("--max-messages-per-second", type=float, help="source read pace (provider limits)")
    ap.add_argument("--parallelism", type=int, default=6, help="connections per side used at once")
    ap.add_argument(
        "--parallelism-round-trip-appends", type=int, default=10,
        help="the same into a destination without LITERAL+ (each message waits a round trip)",
    )  # fmt: skip
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--include-gmail-virtual", action="store_true")
    ap.add_argument(
        "--all-mail-as-folder", action="store_true", help="Gmail: copy All Mail whole, not only its archived messages"
    )
    ap.add_argument("--quiet", "-q", action="store_true")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    source = parse_endpoint(args.source, os.environ.get("IMAPCOPY_SOURCE_PASSWORD", ""), args, source=True)
    destination = parse_endpoint(args.destination, os.environ.get("IMAPCOPY_DEST_PASSWORD", ""), args)
    store = JsonFileCheckpointStore(args.state) if args.state else MemoryCheckpointStore()
    options = CopyOptions(
        dry_run=args.dry_run,
        skip_gmail_virtual_folders=not args.include_gmail_virtual,
        copy_all_mail_as_folder=args.all_mail_as_folder,
        max_message_bytes=int(args.max_message_mb * 1024 * 1024) if args.max_message_mb else None,
        batch_bytes=int(args.batch_mb * 1024 * 1024),
        parallelism=args.parallelism,
        parallelism_round_trip_appends=args.parallelism_round_trip_appends,
    )
    log = logging.getLogger("imapcopy.engine")

    def on_event(event: Event) -> None:
        if event.kind != "connected":
            log.info("%s %s %s", event.kind, event.folder or "", json.dumps(event.detail, ensure_ascii=False))

    def on_progress(p: Progress) -> None:
        log.info(
            "progress %d/%d messages, %.1f MB, folder %s",
            p.messages_copied,
            p.messages_total,
            p.bytes_copied / 1e6,
            p.current_folder,
        )

    result = copy_mailbox(
        source,
        destination,
        options=options,
        checkpoints=store,
        on_progress=None if args.quiet else on_progress,
        on_event=None if args.quiet else on_event,
    )
    if args.json:
        print(json.dumps(asdict(result), ensure_ascii=False, default=str))
    else:
        print(
            f"{result.status}: {result.copied_this_run} messages copied this run "
            f"({result.bytes_this_run / 1e6:.1f} MB) in {result.seconds:.2f}s; "
            f"total {result.messages_copied}/{result.messages_total}, skipped {result.messages_skipped}, "
            f"failed {result.messages_failed}"
            + (f"; error {result.error_code} ({result.error_side}): {result.error_detail}" if result.error_code else "")
        )
    if result.status == "finished" and not result.exact:
        return 1  # copied, but not exactly: stored without some flags, or changed by the destination
    return {"finished": 0, "finished_with_errors": 1, "cancelled": 3}.get(result.status, 2)


if __name__ == "__main__":
    sys.exit(main())

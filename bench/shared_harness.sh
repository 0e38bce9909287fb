#!/usr/bin/env bash
# Cross-check with the independent harness in /work/shared/bench (not part of the repo):
# starts its two Dovecot servers, builds its corpora, runs mbsync and our CLI through run.sh
# (wipe destination, timed copy, verify.py, rerun, verify again), then stops the servers.
#
#   bench/shared_harness.sh            # 5,000-message corpus, then 20,000 small messages
set -euo pipefail
SHARED="${SHARED:-/work/shared/bench}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$SHARED/imapd.sh" start >/dev/null
trap '"$SHARED/imapd.sh" stop >/dev/null' EXIT
eval "$("$SHARED/imapd.sh" env)"
export IMAPCOPY_SOURCE_PASSWORD="$SRC_PASS" IMAPCOPY_DEST_PASSWORD="$DST_PASS"
CMD="cd $REPO && .venv/bin/python -m apps.sync.engine.cli -q imap+plain://\$SRC_USER@\$SRC_HOST:\$SRC_PORT imap+plain://\$DST_USER@\$DST_HOST:\$DST_PORT --state \$BENCH_STATE/state.json"
for corpus in "--messages 5000 --seed 1" "--messages 20000 --small-only --seed 2"; do
  # shellcheck disable=SC2086
  python3 "$SHARED/corpus.py" --wipe $corpus | tail -1
  LABEL="$corpus" "$SHARED/run.sh" mbsync 2>/dev/null | tail -1
  LABEL="$corpus" NAME=imapcopy "$SHARED/run.sh" cmd "$CMD" 2>/dev/null | tail -1
done

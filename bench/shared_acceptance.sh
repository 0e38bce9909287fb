#!/usr/bin/env bash
# The engine issue's second opinion, with the independent harness in /work/shared/bench (not
# part of the repo): `manage.py copymailbox` on its 5,000-message corpus, then verify.py after
#   1. a copy into an empty destination,
#   2. a second run (nothing new: no extra message),
#   3. a run killed with kill -9 once half the messages are checkpointed, and a run after it,
#   4. one more run.
# Each copy prints copymailbox's JSON summary (trimmed), its wall time and peak RSS.
#
#   bench/shared_acceptance.sh
set -uo pipefail
SHARED="${SHARED:-/work/shared/bench}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$REPO/.venv/bin/python"
STATE="$(mktemp -d -t imapcopy-acceptance-XXXXXX)"
"$SHARED/imapd.sh" start >/dev/null 2>&1
trap '"$SHARED/imapd.sh" stop >/dev/null 2>&1; rm -rf "$STATE"' EXIT
eval "$("$SHARED/imapd.sh" env)"
python3 "$SHARED/corpus.py" --wipe --messages 5000 --seed 1 | tail -1
"$PY" -m compileall -q "$REPO/apps" "$REPO/portal" >/dev/null

export IMAPCOPY_SOURCE_PASSWORD="$SRC_PASS" IMAPCOPY_DEST_PASSWORD="$DST_PASS" DEBUG=false
export SECRET_KEY="acceptance-$RANDOM$RANDOM"
CREDENTIAL_KEYS="$("$PY" -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')"
export CREDENTIAL_KEYS
CM=(manage.py copymailbox --json "imap+plain://$SRC_USER@$SRC_HOST:$SRC_PORT" "imap+plain://$DST_USER@$DST_HOST:$DST_PORT")

fresh_database() {  # a new job database: the next copy starts from nothing
  rm -rf "${STATE:?}"/*
  export DATABASE_URL="sqlite:///$STATE/db.sqlite3" IMAPCOPY_VAR_DIR="$STATE"
  (cd "$REPO" && "$PY" manage.py migrate -v0)
}
copy() {
  (cd "$REPO" && /usr/bin/time -f "%e s, peak RSS %M kB" "$PY" "${CM[@]}" 2>"$STATE/stderr" \
    | "$PY" -c 'import json, sys; d = json.load(sys.stdin); print({k: d[k] for k in ("status", "messages_total", "messages_copied", "messages_skipped", "messages_failed", "seconds")})')
  tail -1 "$STATE/stderr"
}
verify() {
  python3 "$SHARED/verify.py" | python3 -c 'import json, sys; d = json.load(sys.stdin); print("verify.py:", {k: v for k, v in d.items() if not isinstance(v, (list, dict))})'
}
checkpointed() {
  sqlite3 "$STATE/db.sqlite3" "select coalesce(sum(messages_copied), 0) from sync_folderprogress" 2>/dev/null || echo 0
}

echo "== 1. copy into an empty destination"
"$SHARED/imapd.sh" wipe dst >/dev/null; fresh_database; copy; verify
echo "== 2. second run"
copy; verify
echo "== 3. a run killed (kill -9) halfway, then a run"
"$SHARED/imapd.sh" wipe dst >/dev/null; fresh_database
(cd "$REPO" && exec "$PY" "${CM[@]}" >/dev/null 2>&1) &
pid=$!
until [ "$(checkpointed)" -ge 2500 ] || ! kill -0 "$pid" 2>/dev/null; do sleep 0.02; done
kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
echo "killed with $(checkpointed) messages checkpointed"
verify
copy; verify
echo "job (status|copied|total|runs): $(sqlite3 "$STATE/db.sqlite3" 'select status, messages_copied, messages_total, attempts from sync_syncjob')"
echo "== 4. one more run"
copy; verify

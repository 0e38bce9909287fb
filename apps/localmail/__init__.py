"""Local mail servers and sample mailboxes, shared by the demo (`manage.py rundemo`), the tests
and the benchmarks: throwaway Dovecot instances on loopback (`dovecot`) and reproducible sample
messages (`mail`).  Plain Python, not a Django app: nothing here is installed or migrated, and
production code never imports it except the demo command."""

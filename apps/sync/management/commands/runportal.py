"""Run the whole service locally: Redis (if none answers), the web server and workers."""

import os
import signal
import subprocess
import sys
import time
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand

from portal.localredis import redis_answers, start_redis


def _stop(process: subprocess.Popen, signals: list[signal.Signals], grace: float) -> None:
    for signum in signals:
        if process.poll() is not None:
            return
        process.send_signal(signum)
        try:
            process.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue
    process.kill()
    process.wait()


class Command(BaseCommand):
    help = "Start the portal on 127.0.0.1:8000 with an RQ worker (and a private Redis when none answers)."

    def add_arguments(self, parser):
        parser.add_argument("--addr", default="127.0.0.1:8000", help="address:port of the web server")
        parser.add_argument("--workers", type=int, default=1, help="how many copy workers to start")
        parser.add_argument(
            "--check-workers", type=int, default=2, help="how many workers run the customers' connection tests"
        )

    def handle(self, *args, addr, workers, check_workers, **options):
        redis = None
        redis_parts = urlsplit(settings.REDIS_URL)
        if not redis_answers(settings.REDIS_URL):
            if redis_parts.hostname not in ("127.0.0.1", "localhost"):
                self.stderr.write(f"Redis does not answer at {settings.REDIS_URL}.")
                sys.exit(1)
            self.stdout.write(f"No Redis on port {redis_parts.port or 6379}: starting a private one in var/redis.")
            redis = start_redis(settings.VAR_DIR / "redis", redis_parts.port or 6379, persist=True)

        manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        # Own sessions, so that a Ctrl-C reaches only this command, which then stops the
        # children in order: web server, workers (warm, then cold), Redis last.
        web = subprocess.Popen([*manage, "runserver", addr, "--noreload"], env=env, start_new_session=True)
        # Connection tests have workers of their own: behind a copy that lasts hours, a customer
        # would wait that long for the form's answer.
        queues = [settings.COPY_QUEUE] * workers + [settings.CHECK_QUEUE] * check_workers
        workers_ = [subprocess.Popen([*manage, "rqworker", queue], env=env, start_new_session=True) for queue in queues]
        self.stdout.write(self.style.SUCCESS(f"IMAPCopy runs at http://{addr}/ (admin: /admin/). Ctrl-C stops it."))

        stopping = False

        def request_stop(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        children = [web, *workers_]
        try:
            while not stopping and all(child.poll() is None for child in children):
                time.sleep(0.3)
        finally:
            self.stdout.write("Stopping…")
            _stop(web, [signal.SIGTERM], 10)
            for worker in workers_:
                # A copy interrupted here resumes from its checkpoints on the next run.
                _stop(worker, [signal.SIGINT, signal.SIGINT], 10)
            if redis is not None:
                _stop(redis, [signal.SIGTERM], 15)
        if not stopping:
            self.stderr.write("A child process stopped unexpectedly; everything was shut down.")
            sys.exit(1)

from django.core.management.base import BaseCommand

from apps.sync.recovery import recover_jobs


class Command(BaseCommand):
    help = (
        "Re-queue jobs whose worker died or whose queue entry was lost, and fail jobs that keep dying. "
        "Safe to run every minute (cron, systemd timer or RQ's scheduler)."
    )

    def handle(self, *args, **options):
        report = recover_jobs()
        self.stdout.write(
            f"re-queued after a lost worker: {report.requeued_lost_runs or 'none'}; "
            f"failed after too many runs: {report.failed_hopeless or 'none'}; "
            f"re-queued after a lost delivery: {report.requeued_lost_deliveries or 'none'}"
        )

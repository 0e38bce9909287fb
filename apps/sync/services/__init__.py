"""Every write to jobs goes through these functions: views, admin actions, commands and the worker
all call them, so the rules (one active job per source, atomic claims, credential erasure) live in
one place. Callers import this package (`from apps.sync import services`); each module holds one
part of a job's life:

- lifecycle: created, claimed, its progress and outcome recorded, cancelled, queued again;
- report_delivery: the report emailed to a proven address, the confirmation link;
- new_mail: copy new mail again (the pass before the switch-over), passwords typed again;
- erasure: passwords, personal data, old jobs;
- command_line: staff's copymailbox resumes the previous job of the same accounts."""

from apps.mailboxes.services import ERASED_ADDRESS
from apps.sync.services.command_line import JobStillRunning, job_resume_or_create
from apps.sync.services.erasure import (
    CredentialsPurged,
    Purged,
    credentials_purge_expired,
    job_erase_credentials,
    job_erase_personal_data,
    jobs_purge_ended,
)
from apps.sync.services.lifecycle import (
    PROGRESS_FIELDS,
    CredentialsErased,
    InvalidJobState,
    JobAlreadyActive,
    JobCounters,
    SameMailbox,
    TooManyActiveJobs,
    job_cancel,
    job_claim,
    job_copy_all_mail_whole,
    job_create,
    job_finish,
    job_heartbeat,
    job_record_event,
    job_record_progress,
    job_requeue,
    job_requeue_lost_run,
    job_retry,
    job_set_staff_note,
    normalize_address,
    progress_mark,
)
from apps.sync.services.new_mail import (
    JOB_SIDES,
    REENTERED_PASSWORD_MINUTES,
    PasswordCheck,
    PasswordState,
    job_copy_new_mail,
    job_password_states,
    job_reenter_passwords,
    job_reenter_tokens,
)
from apps.sync.services.report_delivery import (
    ReportAddressNotProven,
    ReportOutcome,
    job_confirm_report_address,
    job_send_report,
    job_send_report_confirmation,
    job_send_status_link,
)

__all__ = [
    "ERASED_ADDRESS",
    "JOB_SIDES",
    "PROGRESS_FIELDS",
    "REENTERED_PASSWORD_MINUTES",
    "CredentialsErased",
    "CredentialsPurged",
    "InvalidJobState",
    "JobAlreadyActive",
    "JobCounters",
    "JobStillRunning",
    "PasswordCheck",
    "PasswordState",
    "Purged",
    "ReportAddressNotProven",
    "ReportOutcome",
    "SameMailbox",
    "TooManyActiveJobs",
    "credentials_purge_expired",
    "job_cancel",
    "job_claim",
    "job_confirm_report_address",
    "job_copy_all_mail_whole",
    "job_copy_new_mail",
    "job_create",
    "job_erase_credentials",
    "job_erase_personal_data",
    "job_finish",
    "job_heartbeat",
    "job_password_states",
    "job_record_event",
    "job_record_progress",
    "job_reenter_passwords",
    "job_reenter_tokens",
    "job_requeue",
    "job_requeue_lost_run",
    "job_resume_or_create",
    "job_retry",
    "job_send_report",
    "job_send_report_confirmation",
    "job_send_status_link",
    "job_set_staff_note",
    "jobs_purge_ended",
    "normalize_address",
    "progress_mark",
]

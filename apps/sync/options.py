"""The one place that turns the portal's settings into the engine's CopyOptions (the worker and
`manage.py copymailbox` both copy with these)."""

from __future__ import annotations

from django.conf import settings

from apps.sync import engine


def copy_options_from_settings(**overrides) -> engine.CopyOptions:
    """CopyOptions from settings; keyword arguments (dry_run, copy_all_mail_as_folder, ...) win."""
    return engine.CopyOptions(
        **{
            "error_budget": settings.IMAPCOPY_ERROR_BUDGET,
            "max_message_bytes": settings.IMAPCOPY_MAX_MESSAGE_BYTES,
            "batch_bytes": settings.IMAPCOPY_BATCH_BYTES,
            "parallelism": settings.IMAPCOPY_PARALLELISM,
            "parallelism_round_trip_appends": settings.IMAPCOPY_PARALLELISM_ROUND_TRIP_APPENDS,
            **overrides,
        }
    )

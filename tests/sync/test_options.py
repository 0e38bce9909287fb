"""The one place that turns settings into the engine's CopyOptions."""

from __future__ import annotations

from apps.sync.options import copy_options_from_settings


def test_settings_then_overrides(settings):
    settings.IMAPCOPY_PARALLELISM = 3
    settings.IMAPCOPY_BATCH_BYTES = 123_456
    settings.IMAPCOPY_ERROR_BUDGET = 7
    settings.IMAPCOPY_MAX_MESSAGE_BYTES = 9_000_000
    options = copy_options_from_settings(dry_run=True, parallelism=2)
    assert (options.parallelism, options.batch_bytes, options.error_budget) == (2, 123_456, 7)
    assert (options.max_message_bytes, options.dry_run, options.copy_all_mail_as_folder) == (9_000_000, True, False)

#!/usr/bin/env python
import gc
import os
import sys


def start_django() -> None:
    """django.setup(), with the cyclic garbage collector held off meanwhile.

    Starting Django and the apps creates ~70,000 objects that live as long as the process. The
    collector would traverse them again and again while they are created, and several times more
    at exit: ~120 ms of a 0.4 s `manage.py copymailbox` run. Once loaded they are set aside for
    good (gc.freeze()), which also keeps them shared with the work horses rqworker forks."""
    gc.disable()
    try:
        import django
        from django.conf import settings

        try:
            settings.INSTALLED_APPS  # noqa: B018 (loads the settings)
        except Exception:
            return  # bad settings: execute_from_command_line() reports them as usual
        # runserver sets up Django under its autoreloader, which keeps watching files on errors.
        if sys.argv[1:2] != ["runserver"]:
            django.setup()
    finally:
        gc.freeze()
        gc.enable()


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    start_django()
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()

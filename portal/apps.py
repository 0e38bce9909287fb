from django.contrib.admin import autodiscover
from django.contrib.admin.apps import SimpleAdminConfig
from django.contrib.admin.checks import check_admin_app, check_dependencies
from django.core import checks


class PortalAdminConfig(SimpleAdminConfig):
    """The admin with our site, whose admin.py modules are imported with the URLconf
    (portal/urls.py) rather than at start-up: a management command that never serves a page
    (copymailbox, rqworker) starts ~60 ms sooner without them."""

    default_site = "portal.admin.PortalAdminSite"

    def ready(self):
        checks.register(check_dependencies, checks.Tags.admin)
        checks.register(check_registered_admins, checks.Tags.admin)


def check_registered_admins(app_configs, **kwargs):
    # The system checks may run before anything loaded the URLconf: register the admins first,
    # so that their checks are not silently skipped.
    autodiscover()
    return check_admin_app(app_configs, **kwargs)

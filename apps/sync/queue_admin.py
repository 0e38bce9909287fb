"""The queue dashboard (django-rq) for operators only, every change recorded in the admin history.

django-rq's own views only ask for `is_staff`: a support member could empty a queue or stop a
running copy.  Its dashboard is registered again here with every view behind the
`django_rq.admin` permission (the operators group has it), the JSON statistics included for
signed-in staff (a token-only client keeps django-rq's token check), and each POST that changes
something (empty, requeue, delete, stop ...) written to the admin's history with its author."""

from __future__ import annotations

from functools import wraps

from django.contrib import admin
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.urls import URLPattern
from django_rq import admin as rq_admin
from django_rq.models import Dashboard
from django_rq.settings import get_queues_list

PERMISSION = "django_rq.admin"


def _operators_only(view, *, token_clients: bool = False):
    @wraps(view)
    def checked(request, *args, **kwargs):
        user = request.user
        signed_in = user.is_authenticated
        if (signed_in or not token_clients) and not (user.is_active and user.has_perm(PERMISSION)):
            raise PermissionDenied
        response = view(request, *args, **kwargs)
        if request.method == "POST" and signed_in and response.status_code < 400:
            _record(request, view.__name__, kwargs)
        return response

    return checked


def _record(request, action: str, arguments: dict) -> None:
    where = ", ".join(f"{name}={value}" for name, value in sorted(arguments.items()))
    queue = _queue_name(arguments.get("queue_index"))
    LogEntry.objects.create(
        user_id=request.user.pk,
        content_type_id=ContentType.objects.get_for_model(Dashboard, for_concrete_model=False).pk,
        object_id=queue or "",
        object_repr=f"queue {queue}" if queue else "queues",
        action_flag=CHANGE,
        change_message=f"django-rq {action} ({where})"[:2000],
    )


def _queue_name(index) -> str | None:
    names = [queue["name"] for queue in get_queues_list()]  # django-rq's own order (by name)
    return names[index] if isinstance(index, int) and 0 <= index < len(names) else None


class OperatorsQueueAdmin(rq_admin.QueueAdmin):
    def has_module_permission(self, request) -> bool:
        return request.user.is_active and request.user.has_perm(PERMISSION)

    def has_view_permission(self, request, obj=None) -> bool:
        return self.has_module_permission(request)

    def has_change_permission(self, request, obj=None) -> bool:
        return self.has_module_permission(request)

    def changelist_view(self, request, extra_context=None):
        if not self.has_module_permission(request):
            raise PermissionDenied
        return super().changelist_view(request, extra_context)

    def get_urls(self) -> list[URLPattern]:
        urls = super().get_urls()
        for pattern in urls:
            if isinstance(pattern, URLPattern):
                api = (pattern.name or "").endswith(("home_json", "metrics"))
                pattern.callback = _operators_only(pattern.callback, token_clients=api)
        return urls


if admin.site.is_registered(Dashboard):
    admin.site.unregister(Dashboard)
admin.site.register(Dashboard, OperatorsQueueAdmin)

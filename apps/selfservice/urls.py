from django.urls import path

from apps.selfservice import views

app_name = "selfservice"
urlpatterns = [
    path("", views.source_step, name="source"),
    path("destination/", views.destination_step, name="destination"),
    path("synchronize/", views.synchronize_step, name="synchronize"),
    path("status/", views.status_lookup, name="status"),
    path("status/<str:token>/", views.job_status, name="job-status"),
    path("status/<str:token>/progress/", views.job_progress, name="job-progress"),
    path("status/<str:token>/confirmation/", views.report_confirmation_send, name="report-confirmation-send"),
    path("report/<str:token>/", views.report_confirm, name="report-confirm"),
]

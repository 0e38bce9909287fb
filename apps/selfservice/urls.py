from django.urls import path

from apps.selfservice import oauth_views, status_views, views

app_name = "selfservice"
urlpatterns = [
    path("", views.source_step, name="source"),
    path("destination/", views.destination_step, name="destination"),
    path("synchronize/", views.synchronize_step, name="synchronize"),
    path("sign-in/<str:role>/", oauth_views.oauth_start, name="oauth-start"),
    path("status/", status_views.status_lookup, name="status"),
    path("status/<str:token>/", status_views.job_status, name="job-status"),
    path("status/<str:token>/progress/", status_views.job_progress, name="job-progress"),
    path("status/<str:token>/confirmation/", status_views.report_confirmation_send, name="report-confirmation-send"),
    path("status/<str:token>/new-mail/", status_views.copy_new_mail, name="copy-new-mail"),
    path("status/<str:token>/sign-in/", oauth_views.oauth_resume_start, name="oauth-resume"),
    path("status/<str:token>/new-mail/sign-in/<str:side>/", oauth_views.oauth_new_mail_start, name="oauth-new-mail"),
    path("report/<str:token>/", status_views.report_confirm, name="report-confirm"),
]

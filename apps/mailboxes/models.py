from django.db import models
from django.utils.translation import gettext_lazy as _

from apps.mailboxes.crypto import decrypt_secret, encrypt_secret
from apps.providers.models import Provider, Security


class MailAccount(models.Model):
    """The IMAP credentials of one side of a copy.

    The password is stored only as a Fernet ciphertext and erased once it is no longer
    needed; it never appears in repr(), forms or the admin.
    """

    provider = models.ForeignKey(
        Provider, on_delete=models.PROTECT, related_name="accounts", verbose_name=_("provider")
    )
    email_address = models.EmailField(_("email address"), max_length=254, db_index=True)
    login = models.CharField(_("login"), max_length=320)
    host = models.CharField(_("IMAP server"), max_length=253)
    port = models.PositiveIntegerField(_("port"))
    security = models.CharField(_("security"), max_length=10, choices=Security.choices)
    # The password, or for an account signed in with OAuth2 (`oauth_service` set) its tokens as
    # JSON (oauth.tokens_to_secret): one secret, encrypted, rotated and erased the same way.
    password_ciphertext = models.TextField(editable=False, blank=True, default="")
    oauth_service = models.CharField(_("sign-in service"), max_length=12, blank=True, editable=False)
    verified_at = models.DateTimeField(_("connection verified"), null=True, blank=True)
    # What the connection test found; shown to the customer and used for the time estimate.
    found_folders = models.PositiveIntegerField(_("folders found"), null=True, blank=True)
    found_messages = models.PositiveIntegerField(_("messages found"), null=True, blank=True)
    found_bytes = models.PositiveBigIntegerField(_("bytes found"), null=True, blank=True)
    password_erased_at = models.DateTimeField(_("password erased"), null=True, blank=True)
    # The connection test runs on the checks queue: when it was asked for, and how it failed.
    check_requested_at = models.DateTimeField(_("connection test requested"), null=True, blank=True)
    check_error_code = models.CharField(_("connection test error"), max_length=40, blank=True)
    # Who entered the account, as a keyed hash of the client's address (never the address itself):
    # enough to cap the connection tests and copies one client may have running.
    created_from = models.CharField(max_length=64, blank=True, db_index=True, editable=False)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("mail account")
        verbose_name_plural = _("mail accounts")
        constraints = [
            models.CheckConstraint(condition=models.Q(port__gte=1, port__lte=65535), name="account_port_in_range"),
        ]

    def __str__(self) -> str:
        return self.email_address

    def __repr__(self) -> str:
        return f"<MailAccount {self.pk}: {self.login}@{self.host}:{self.port}>"

    @property
    def mailbox_identity(self) -> str:
        """Which mailbox this is, whatever address the customer typed: the login on the server
        (case and a trailing dot of the host name do not make another mailbox)."""
        return f"{self.login.strip().lower()}@{self.host.strip().rstrip('.').lower()}"

    @property
    def check_pending(self) -> bool:
        return self.check_requested_at is not None and self.verified_at is None and not self.check_error_code

    @property
    def has_password(self) -> bool:
        return bool(self.password_ciphertext)

    @property
    def uses_oauth(self) -> bool:
        return bool(self.oauth_service)

    def set_password(self, raw_password: str) -> None:
        self.password_ciphertext = encrypt_secret(raw_password)
        self.password_erased_at = None

    def decrypt_password(self) -> str:
        """Only the worker and the connection test call this, right before connecting."""
        return decrypt_secret(self.password_ciphertext)

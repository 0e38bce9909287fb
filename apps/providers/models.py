from django.db import models
from django.utils.html import escape
from django.utils.safestring import mark_safe
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

# The link under a provider's help, and beside the password when that provider refuses the login.
HELP_LINK = _('See <a href="%(url)s" target="_blank" rel="noopener noreferrer">%(provider)s help</a>.')
# When the provider refused the login: what it wants as a password (none for the usual password).
PASSWORD_ADVICE = {
    "app": _("%(provider)s needs an app password, not your usual password."),
    "none": _("%(provider)s no longer accepts passwords from mail programs."),
}


class Security(models.TextChoices):
    TLS = "tls", _("SSL/TLS (implicit)")
    STARTTLS = "starttls", _("STARTTLS")
    NONE = "none", _("None (unencrypted)")


class ProviderQuerySet(models.QuerySet):
    def active(self):
        return self.filter(is_active=True)

    def for_source(self):
        return self.active().filter(role__in=[Provider.Role.SOURCE, Provider.Role.BOTH])

    def for_destination(self):
        return self.active().filter(role__in=[Provider.Role.DESTINATION, Provider.Role.BOTH])


class Provider(models.Model):
    """A mail service a customer can pick, with its IMAP settings and the limits it imposes."""

    class Role(models.TextChoices):
        SOURCE = "source", _("Source only")
        DESTINATION = "destination", _("Destination only")
        BOTH = "both", _("Source and destination")

    class LoginFormat(models.TextChoices):
        FULL_ADDRESS = "address", _("The full email address")
        LOCAL_PART = "local_part", _("The part before “@”")

    class PasswordKind(models.TextChoices):
        USUAL = "usual", _("The account's usual password")
        APP = "app", _("An app password, not the usual one")
        NONE = "none", _("None: the provider refuses passwords from mail programs")

    name = models.CharField(_("name"), max_length=100)
    slug = models.SlugField(_("slug"), max_length=60, unique=True)
    role = models.CharField(_("role"), max_length=12, choices=Role.choices, default=Role.BOTH)
    imap_host = models.CharField(
        _("IMAP server"),
        max_length=253,
        blank=True,
        help_text=_("Leave empty when each customer has their own server (private Exchange, “Other”)."),
    )
    imap_port = models.PositiveIntegerField(_("IMAP port"), default=993)
    security = models.CharField(_("security"), max_length=10, choices=Security.choices, default=Security.TLS)
    login_format = models.CharField(
        _("login"), max_length=12, choices=LoginFormat.choices, default=LoginFormat.FULL_ADDRESS
    )
    email_domain = models.CharField(
        _("email domain"),
        max_length=253,
        blank=True,
        help_text=_("Completes the address when the login is the part before “@” (e.g. free.fr)."),
    )
    host_editable = models.BooleanField(
        _("customer may change the server"),
        default=False,
        help_text=_("Shows the server, port and security fields to the customer."),
    )
    help_text = models.TextField(
        _("help for customers"),
        blank=True,
        help_text=_(
            "Shown under the service the customer chose, and beside the password when the provider "
            "refuses the login: which login and password to use, e.g. “Use an app password”."
        ),
    )
    password_kind = models.CharField(
        _("password"),
        max_length=8,
        choices=PasswordKind.choices,
        default=PasswordKind.USUAL,
        help_text=_("What the customer must type as the password; said beside it when the provider refuses the login."),
    )
    help_url = models.URLField(
        _("provider's help page"),
        max_length=500,
        blank=True,
        help_text=_("The provider's own page on signing in from a mail program; linked under the help."),
    )
    oauth_service = models.CharField(
        _("sign-in service"),
        max_length=12,
        blank=True,
        choices=[("", _("None: passwords only")), ("google", "Google"), ("microsoft", "Microsoft")],
        help_text=_(
            "Offers “Sign in with …” for this provider when the service's client id and secret are set "
            "(IMAPCOPY_GOOGLE_* / IMAPCOPY_MICROSOFT_* settings)."
        ),
    )
    is_active = models.BooleanField(_("active"), default=True)
    sort_order = models.PositiveIntegerField(_("sort order"), default=100)
    max_connections = models.PositiveIntegerField(
        _("max. connections"), null=True, blank=True, help_text=_("Empty means unlimited.")
    )
    max_messages_per_second = models.FloatField(
        _("max. messages per second"), null=True, blank=True, help_text=_("Empty means unlimited.")
    )
    max_bytes_per_second = models.PositiveBigIntegerField(
        _("max. bytes per second"), null=True, blank=True, help_text=_("Empty means unlimited.")
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    objects = ProviderQuerySet.as_manager()

    class Meta:
        ordering = ["sort_order", "name"]
        verbose_name = _("provider")
        verbose_name_plural = _("providers")
        constraints = [
            models.CheckConstraint(
                condition=models.Q(imap_port__gte=1, imap_port__lte=65535),
                name="provider_port_in_range",
            ),
        ]
        permissions = [("check_provider", _("Can check that providers' servers answer"))]

    def __str__(self) -> str:
        return self.name

    @property
    def display_name(self) -> str:
        # A seeded name ("Other") reads in the customer's language; a staff-made one as typed.
        return gettext(self.name) if self.name else ""

    @property
    def display_help_text(self) -> str:
        return gettext(self.help_text) if self.help_text else ""

    @property
    def password_advice(self) -> str:
        """ "Gmail needs an app password, not your usual password.", or "" for the usual password."""
        advice = PASSWORD_ADVICE.get(self.password_kind)
        return str(advice) % {"provider": self.display_name} if advice else ""

    @property
    def help_link(self) -> str:
        """ "See Gmail help." linking to the provider's own help page (HTML), or ""."""
        if not self.help_url:
            return ""
        values = {"url": escape(self.help_url), "provider": escape(self.display_name)}
        return mark_safe(str(HELP_LINK) % values)  # noqa: S308 - the catalog's HTML, the values escaped

    @property
    def customer_types_host(self) -> bool:
        return self.host_editable or not self.imap_host

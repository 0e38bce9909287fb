from __future__ import annotations

import re

from django import forms
from django.conf import settings
from django.core.validators import validate_email
from django.forms.utils import ErrorDict
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext_lazy

from apps.providers.models import Provider, Security

# A host name or an IP literal; the connection test resolves and vets it.
HOST_PATTERN = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9.\-]*[A-Za-z0-9])?$|^\[?[0-9A-Fa-f:.]+\]?$")
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


# What the customer chooses, with the port each choice uses when the port is left empty.
SECURITY_CHOICES = [
    (Security.TLS, _("SSL/TLS (port 993)")),
    (Security.STARTTLS, _("STARTTLS (port 143)")),
    (Security.NONE, _("None: unencrypted (port 143)")),
]
DEFAULT_PORTS = {Security.TLS: 993, Security.STARTTLS: 143, Security.NONE: 143}
# Where a failed connection test points the customer: the fields at fault, and what to check.
CHECK_ERROR_FIELDS = {
    "auth_failed": (("login", "password"), _("The server refused this login or password.")),
    "auth_unsupported_characters": (("password",), _("The server cannot accept this password.")),
    "dns_failed": (("host",), _("The server name could not be found.")),
    "host_not_allowed": (("host",), _("This server address is not allowed.")),
    "unreachable": (("host", "port"), _("This server could not be reached on this port.")),
    "connection_refused": (("host", "port"), _("This server refused the connection on this port.")),
    "timeout": (("host", "port"), _("This server did not answer on this port.")),
    "not_imap": (("host", "port"), _("No IMAP server answers at this address and port.")),
    "tls_error": (("port", "security"), _("Check that this port and this connection security go together.")),
}
# A refused login on a provider that has a help page: who refused, beside the login and the password
# (and, beside the password, what password it wants and a link to its help).
REFUSED_BY_PROVIDER = _("%(provider)s refused this login or password.")


class ProviderChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, provider: Provider) -> str:
        return provider.display_name


class AccountForm(forms.Form):
    """One side of the copy: provider, login, password and, when needed, the server."""

    provider = ProviderChoiceField(
        queryset=Provider.objects.none(),
        label=_("Service"),
        empty_label=_("Choose your service"),
        error_messages={"required": _("Choose your service in the list.")},
    )
    login = forms.CharField(label=_("Login"), max_length=320)
    password = forms.CharField(
        label=_("Password"), max_length=1024, strip=False, widget=forms.PasswordInput(render_value=False)
    )
    email_address = forms.CharField(
        label=_("Email address"),
        max_length=254,
        required=False,
        help_text=_("Only needed when your login is not your email address."),
    )
    host = forms.CharField(label=_("IMAP server"), max_length=253, required=False)
    security = forms.ChoiceField(
        label=_("Connection security"),
        choices=SECURITY_CHOICES,
        initial=Security.TLS,
        required=False,
        widget=forms.RadioSelect,
    )
    port = forms.IntegerField(
        label=_("Port"),
        min_value=1,
        max_value=65535,
        required=False,
        help_text=_("Leave it empty to use the usual port of the connection security you chose."),
    )

    def __init__(self, data=None, *args, role: str, **kwargs):
        if data is not None and data.get("choose_provider"):
            # Without JavaScript, the customer may choose the service first ("Show the advice and
            # settings for this service"): the same form again, nothing checked, the choice and the
            # login kept, the password dropped.
            kept = ("provider", "login", "email_address", "host", "security", "port")
            kwargs["initial"] = {name: data.get(name) for name in kept if data.get(name)}
            data = None
        super().__init__(data, *args, **kwargs)
        providers = Provider.objects.for_source() if role == "source" else Provider.objects.for_destination()
        self.fields["provider"].queryset = providers
        if not settings.IMAPCOPY_ALLOW_PLAINTEXT_IMAP:
            self.fields["security"].choices = [c for c in SECURITY_CHOICES if c[0] != Security.NONE]
        self.fields["login"].widget.attrs.update(autocomplete="username", autocapitalize="none", spellcheck="false")
        self.fields["password"].widget.attrs.update(autocomplete="current-password")
        self.fields["host"].widget.attrs.update(autocapitalize="none", spellcheck="false")
        self.fields["email_address"].widget.attrs.update(autocomplete="email", inputmode="email")
        self.fields["port"].widget.attrs.update(inputmode="numeric", placeholder="993")

    @property
    def fixed_providers(self) -> list[Provider]:
        """The presets whose server the customer cannot change: shown as text, not as fields."""
        return [provider for provider in self.fields["provider"].queryset if not provider.customer_types_host]

    @property
    def selected_provider(self) -> Provider | None:
        value = self["provider"].value()
        return next((p for p in self.fields["provider"].queryset if str(p.pk) == str(value)), None) if value else None

    @property
    def advised_providers(self) -> list[Provider]:
        """The providers with advice for customers: each gets its block under the service list."""
        return [provider for provider in self.fields["provider"].queryset if provider.help_text or provider.help_url]

    def show_check_error(self, code: str) -> None:
        """After a failed connection test: a short message beside each field at fault, where the
        customer typed it (a preset's own server is not theirs to correct). A login refused by a
        provider with a help page says who refused and, beside the password, what password that
        provider wants, with a link to its help (its whole advice is shown under the service)."""
        fields, message = CHECK_ERROR_FIELDS.get(code, ((), ""))
        provider = self.selected_provider
        messages = {name: message for name in fields}
        if provider is not None and not provider.customer_types_host:
            messages = {name: text for name, text in messages.items() if name not in ("host", "port", "security")}
        if code == "auth_failed" and provider is not None and provider.help_url:
            refused = REFUSED_BY_PROVIDER % {"provider": provider.display_name}
            messages["login"] = refused
            advice = [text for text in (refused, provider.password_advice, provider.help_link) if text]
            messages["password"] = format_html(" ".join(["{}"] * len(advice)), *advice)
        if self._errors is None:
            self._errors = ErrorDict()
        for name, text in messages.items():
            self._errors.setdefault(name, self.error_class(renderer=self.renderer)).append(text)

    def _clean_text(self, name: str) -> str:
        value = self.cleaned_data.get(name) or ""
        if CONTROL_CHARACTERS.search(value):
            raise forms.ValidationError(_("This field cannot contain control characters."), code="control")
        return value.strip()

    def clean_login(self) -> str:
        return self._clean_text("login")

    def clean_password(self) -> str:
        value = self.cleaned_data.get("password") or ""
        if "\r" in value or "\n" in value or "\x00" in value:
            raise forms.ValidationError(_("The password cannot contain line breaks."), code="control")
        return value

    def clean_host(self) -> str:
        value = self._clean_text("host").lower().rstrip(".")
        if value and not HOST_PATTERN.match(value):
            raise forms.ValidationError(_("Enter a server name such as imap.example.com."), code="host")
        return value.strip("[]")

    def clean_email_address(self) -> str:
        return self._clean_text("email_address").lower()

    def clean(self):
        cleaned = super().clean()
        provider: Provider | None = cleaned.get("provider")
        login = cleaned.get("login")
        if provider is None or not login:
            return cleaned

        if provider.customer_types_host:
            host = cleaned.get("host") or provider.imap_host
            if not host and "host" not in self.errors:  # a server typed but refused has its own error
                self.add_error("host", forms.ValidationError(_("Enter your IMAP server."), code="required"))
            usual = bool(provider.imap_host) and host == provider.imap_host
            security = cleaned.get("security") or (provider.security if usual else Security.TLS)
            # An empty port follows the security chosen (the preset's own port goes with its own security).
            usual_port = provider.imap_port if usual and security == provider.security else DEFAULT_PORTS[security]
            port = cleaned.get("port") or usual_port
        else:
            host, port, security = provider.imap_host, provider.imap_port, provider.security
        allowed_ports = settings.IMAPCOPY_IMAP_PORTS
        if host and allowed_ports is not None and port not in allowed_ports and host != provider.imap_host:
            # The form must not become a port scanner: only the ports IMAP servers listen on.
            ports = ", ".join(str(number) for number in sorted(allowed_ports))
            self.add_error(
                "port",
                forms.ValidationError(
                    _("Only these ports can be used for an IMAP server: %(ports)s."),
                    code="port",
                    params={"ports": ports},
                ),
            )
        cleaned.update(imap_host=host, imap_port=port, imap_security=security)

        address = cleaned.get("email_address")
        if not address:
            if provider.login_format == Provider.LoginFormat.LOCAL_PART and provider.email_domain:
                address = f"{login.split('@', 1)[0]}@{provider.email_domain}"
            else:
                address = login
        try:
            validate_email(address)
        except forms.ValidationError:
            field = "email_address" if cleaned.get("email_address") else "login"
            message = (
                _("Enter a valid email address.")
                if field == "email_address"
                else _("Your login is not an email address: please also enter your email address.")
            )
            self.add_error(field, forms.ValidationError(message, code="invalid"))
            if field == "login":
                self.add_error("email_address", forms.ValidationError(_("Enter your email address."), code="required"))
        cleaned["address"] = address.lower()

        if provider.login_format == Provider.LoginFormat.LOCAL_PART and "@" in login:
            cleaned["login"] = login.split("@", 1)[0]
        return cleaned


class StatusLookupForm(forms.Form):
    address = forms.EmailField(label=_("Source email address"), max_length=254)


# --- Copy new mail again (the pass before the switch-over) ---------------------------------------

KEEP_CREDENTIALS_LABEL = ngettext_lazy(
    "Keep my passwords (encrypted) for %(days)d day so that I can copy new mail again later",
    "Keep my passwords (encrypted) for %(days)d days so that I can copy new mail again later",
    "days",
)


class SynchronizeForm(forms.Form):
    """The Synchronize step: the customer may keep the passwords to copy new mail again later."""

    keep_credentials = forms.BooleanField(
        required=False,
        help_text=_(
            "Useful when you move to another provider: once your mail arrives at the new one, copy the "
            "messages that came in meanwhile from the page of your copy. Unticked, your passwords are "
            "erased as soon as the copy ends."
        ),
    )

    def __init__(self, *args, days: int, **kwargs):
        kwargs.setdefault("label_suffix", "")  # a sentence beside its box, not a field's name
        super().__init__(*args, **kwargs)
        self.fields["keep_credentials"].label = KEEP_CREDENTIALS_LABEL % {"days": days}


SIDE_LEGENDS = {"source": _("Source account"), "destination": _("Destination account")}


class NewMailPasswordsForm(forms.Form):
    """The passwords of a finished copy, typed again (they were erased at its end) to copy the mail
    that arrived since: the logins are the job's, shown read-only; only the sides whose password is
    missing are asked."""

    def __init__(self, data=None, *args, job, sides, **kwargs):
        super().__init__(data, *args, **kwargs)
        self.job, self.sides = job, [side for side in ("source", "destination") if side in sides]
        for side in self.sides:
            account = getattr(job, side)
            login = forms.CharField(label=_("Login"), required=False, disabled=True, initial=account.login)
            login.widget.attrs.update(readonly=True, autocomplete="off")
            password = forms.CharField(
                label=_("Password"), max_length=1024, strip=False, widget=forms.PasswordInput(render_value=False)
            )
            password.widget.attrs.update(autocomplete="current-password")
            self.fields[f"{side}_login"] = login
            self.fields[f"{side}_password"] = password

    @property
    def side_fields(self) -> list[dict]:
        """Per account asked: its legend, its server, and its two fields (for the template)."""
        return [
            {
                "side": side,
                "legend": SIDE_LEGENDS[side],
                "account": getattr(self.job, side),
                "login": self[f"{side}_login"],
                "password": self[f"{side}_password"],
            }
            for side in self.sides
        ]

    def clean(self):
        cleaned = super().clean()
        for side in self.sides:
            value = cleaned.get(f"{side}_password") or ""
            if "\r" in value or "\n" in value or "\x00" in value:
                self.add_error(
                    f"{side}_password",
                    forms.ValidationError(_("The password cannot contain line breaks."), code="control"),
                )
        return cleaned

    def show_check_error(self, side: str, code: str) -> None:
        """After a failed login test: the form's step's own words, beside the password typed
        (a refused login on a provider with a help page names it and says what password it wants)."""
        from apps.sync.error_messages import error_message

        provider = getattr(self.job, side).provider
        name = f"{side}_password"
        if code == "auth_failed" and provider.help_url:
            advice = [
                text
                for text in (REFUSED_BY_PROVIDER % {"provider": provider.display_name}, provider.password_advice,
                             provider.help_link)
                if text
            ]  # fmt: skip
            message = format_html(" ".join(["{}"] * len(advice)), *advice)
        elif code in ("auth_failed", "auth_unsupported_characters"):
            message = CHECK_ERROR_FIELDS[code][1]
        else:  # the server did not answer as it should: nothing the customer can change here
            message = error_message(code)
        if self._errors is None:
            self._errors = ErrorDict()
        self._errors.setdefault(name, self.error_class(renderer=self.renderer)).append(message)

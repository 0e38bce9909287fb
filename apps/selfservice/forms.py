from __future__ import annotations

import re

from django import forms
from django.conf import settings
from django.core.validators import validate_email
from django.utils.translation import gettext_lazy as _

from apps.providers.models import Provider, Security

# A host name or an IP literal; the connection test resolves and vets it.
HOST_PATTERN = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9.\-]*[A-Za-z0-9])?$|^\[?[0-9A-Fa-f:.]+\]?$")
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


class ProviderChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, provider: Provider) -> str:
        return provider.display_name


class AccountForm(forms.Form):
    """One side of the copy: provider, login, password and, when needed, the server."""

    provider = ProviderChoiceField(queryset=Provider.objects.none(), label=_("Service"), empty_label=None)
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
    use_ssl = forms.BooleanField(label=_("SSL"), required=False, initial=True)
    port = forms.IntegerField(label=_("Port"), min_value=1, max_value=65535, required=False)
    security = forms.ChoiceField(label=_("Security"), choices=Security.choices, required=False)

    def __init__(self, *args, role: str, **kwargs):
        super().__init__(*args, **kwargs)
        providers = Provider.objects.for_source() if role == "source" else Provider.objects.for_destination()
        self.fields["provider"].queryset = providers
        if not settings.IMAPCOPY_ALLOW_PLAINTEXT_IMAP:
            self.fields["security"].choices = [c for c in Security.choices if c[0] != Security.NONE]
        self.fields["login"].widget.attrs.update(autocomplete="username", autocapitalize="none", spellcheck="false")
        self.fields["password"].widget.attrs.update(autocomplete="current-password")
        self.fields["host"].widget.attrs.update(autocapitalize="none", spellcheck="false")
        self.fields["email_address"].widget.attrs.update(autocomplete="email", inputmode="email")

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
            if not host:
                self.add_error("host", forms.ValidationError(_("Enter your IMAP server."), code="required"))
            security = cleaned.get("security") or (Security.TLS if cleaned.get("use_ssl") else Security.STARTTLS)
            default_port = 993 if security == Security.TLS else 143
            port = cleaned.get("port") or (provider.imap_port if host == provider.imap_host else default_port)
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

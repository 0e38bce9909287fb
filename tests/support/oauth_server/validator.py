from oauth2_provider.oauth2_validators import OAuth2Validator


class EmailClaimValidator(OAuth2Validator):
    """ID tokens and userinfo carry the mailbox address, as Google's and Microsoft's do."""

    oidc_claim_scope = None  # every claim whatever the scope, like the providers' ID tokens

    def get_additional_claims(self, request):
        return {"email": request.user.email, "preferred_username": request.user.email}

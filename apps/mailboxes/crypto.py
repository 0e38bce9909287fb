"""Encryption of account passwords at rest.

A MultiFernet built from settings.CREDENTIAL_KEYS (newest first): new ciphertexts use the
newest key, every listed key can still decrypt, so keys rotate without downtime.
"""

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class CredentialDecryptionError(Exception):
    """No configured key decrypts this ciphertext (a key was dropped too early)."""


@lru_cache(maxsize=4)
def _multifernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key) for key in keys])


def _cipher() -> MultiFernet:
    return _multifernet(tuple(settings.CREDENTIAL_KEYS))


def encrypt_secret(plaintext: str) -> str:
    return _cipher().encrypt(plaintext.encode("utf-8")).decode("ascii")


def decrypt_secret(ciphertext: str) -> str:
    try:
        return _cipher().decrypt(ciphertext.encode("ascii")).decode("utf-8")
    except InvalidToken:
        raise CredentialDecryptionError("no configured credential key decrypts this secret") from None


def reencrypt_secret(ciphertext: str) -> str:
    """The same secret under the newest key (MultiFernet.rotate keeps the original timestamp)."""
    try:
        return _cipher().rotate(ciphertext.encode("ascii")).decode("ascii")
    except InvalidToken:
        raise CredentialDecryptionError("no configured credential key decrypts this secret") from None

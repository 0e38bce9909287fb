"""Security headers (admin log-in throttling: test_admin_login.py)."""

import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def fresh_counters():
    cache.clear()
    yield
    cache.clear()


@pytest.mark.django_db
def test_customer_pages_send_a_strict_content_security_policy(client):
    response = client.get("/")
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"


@pytest.mark.django_db
def test_customer_pages_have_no_inline_script_or_style(client):
    body = client.get("/").content.decode()
    assert "<script>" not in body and "<style" not in body and 'style="' not in body

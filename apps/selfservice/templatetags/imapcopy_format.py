"""Template filters for the customer's figures: `{% load imapcopy_format %}`, then
`{{ bytes|size }}`, `{{ count|count }}`, `{{ seconds|duration }}` (see apps/sync/formatting.py)."""

from django import template

from apps.sync import formatting

register = template.Library()


@register.filter
def size(value) -> str:
    return formatting.size_text(value)


@register.filter
def count(value) -> str:
    return formatting.count_text(value)


@register.filter
def duration(value) -> str:
    return formatting.duration_text(value)

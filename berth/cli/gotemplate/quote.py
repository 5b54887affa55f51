"""Go's strconv.Quote for the templates (berth/goquote.py)."""

from berth.goquote import quote as go_quote  # noqa: F401

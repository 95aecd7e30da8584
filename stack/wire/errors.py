"""The one exception the wire parsers raise."""


class ParseError(ValueError):
    """Raised for any malformed input; the message says which field was wrong."""

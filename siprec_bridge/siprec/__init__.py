"""SIPREC body handling (RFC 7866 §9, RFC 7865): pure functions, bytes in, dataclasses out.

Modules:

- :mod:`.multipart` - split ``multipart/mixed`` (RFC 2046 §5.1), pick SDP and metadata parts.
- :mod:`.metadata` - parse recording metadata (RFC 7865 and the pre-RFC dialects).
- :mod:`.session` - join SDP m-lines to metadata streams and senders; detect SIPREC requests.

Exception tree (both are ``ValueError``; nothing else escapes these modules)::

    ValueError
     ├── multipart.BodyError      body unusable; .status (SIP code to answer), .text (Warning)
     └── metadata.MetadataError   metadata unreadable; advisory, so callers record and go on

:func:`.session.join` never raises: inconsistencies become ``problems`` strings.
"""

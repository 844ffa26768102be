"""Who may call the service and what they may do: SMART v2 scopes, the
SMART Backend Services client assertion and the access tokens it earns,
and the password hashing of portal users. Pure: no web, no database; the
service (``service/auth.py``) and the store (``service/accounts.py``) use it.
"""

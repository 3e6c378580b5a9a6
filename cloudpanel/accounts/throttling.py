"""The API's request rates (DRF throttles), set by API_USER_RATE and API_ANON_RATE."""

from rest_framework.throttling import AnonRateThrottle, UserRateThrottle


class UserRate(UserRateThrottle):
    """Per user, whichever token or session they come with. The key carries the account's
    creation time too, so that an account created again with a reused id starts afresh."""

    def get_cache_key(self, request, view):
        user = request.user
        if not (user and user.is_authenticated):
            return None  # AnonRate's
        joined = int(user.date_joined.timestamp()) if user.date_joined else 0
        return self.cache_format % {"scope": self.scope, "ident": f"{user.pk}.{joined}"}


class AnonRate(AnonRateThrottle):
    """Per client address, for what anyone may read (the schema, the docs)."""

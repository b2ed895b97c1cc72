"""``Authorization: Bearer <token>`` for the REST API."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

from accounts.models import ApiToken, token_digest
from accounts.services import api_token_touch

KEYWORD = b"bearer"


class BearerTokenAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Any, ApiToken] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != KEYWORD:
            return None  # not ours: let session authentication have a go
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Malformed bearer token header.")
        try:
            token = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Malformed bearer token header.") from None
        row = ApiToken.objects.select_related("user").filter(digest=token_digest(token)).first()
        if row is None or not row.user.is_active:
            raise exceptions.AuthenticationFailed("Invalid token.")
        api_token_touch(token=row)
        return row.user, row

    def authenticate_header(self, request: Request) -> str:
        # Being first in DEFAULT_AUTHENTICATION_CLASSES, this makes DRF answer 401 (with
        # this challenge) rather than 403 to an anonymous request.
        return 'Bearer realm="api"'

"""FastAPI dependencies: the process's container and the caller's token."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from orchestrator.api.errors import ApiError
from orchestrator.bootstrap import Container
from orchestrator.domain.records import Token
from orchestrator.services.tokens import authenticate


def get_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


ContainerDep = Annotated[Container, Depends(get_container)]


# Declares the scheme in the OpenAPI schema (every /v1 operation's `security`); the token is
# checked below, so that each refusal is a 401 in this API's error shape.
BEARER = HTTPBearer(auto_error=False, description="an API token, from `orchestrator tokens "
                                                  "create NAME`")


def require_token(
    container: ContainerDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
) -> Token:
    if credentials is None:  # no Authorization header, another scheme, or no token in it
        raise ApiError(401, "unauthorized",
                       "missing bearer token: send 'Authorization: Bearer <token>' "
                       "(create one with 'orchestrator tokens create NAME')")
    token = authenticate(credentials.credentials, container.store)
    if token is None:
        raise ApiError(401, "unauthorized", "the token is unknown or revoked")
    return token


TokenDep = Annotated[Token, Depends(require_token)]

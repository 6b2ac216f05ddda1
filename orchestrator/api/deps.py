"""FastAPI dependencies: the process's container and the caller's token."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from orchestrator.api.errors import ApiError
from orchestrator.bootstrap import Container
from orchestrator.domain.records import Token
from orchestrator.services.tokens import authenticate


def get_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


ContainerDep = Annotated[Container, Depends(get_container)]


def require_token(
    container: ContainerDep,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Token:
    scheme, _, secret = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise ApiError(401, "unauthorized",
                       "missing bearer token: send 'Authorization: Bearer <token>' "
                       "(create one with 'orchestrator tokens create NAME')")
    token = authenticate(secret.strip(), container.store)
    if token is None:
        raise ApiError(401, "unauthorized", "the token is unknown or revoked")
    return token


TokenDep = Annotated[Token, Depends(require_token)]

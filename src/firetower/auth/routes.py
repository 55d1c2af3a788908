"""REST API for users, teams and API tokens."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response, status

from firetower.auth import service
from firetower.auth.deps import NO_STORE, Admin, ReadSession, RuntimeDep, Viewer
from firetower.auth.models import Team
from firetower.auth.schemas import (
    TeamCreate,
    TeamRead,
    TokenCreate,
    TokenCreated,
    TokenRead,
    UserCreate,
    UserRead,
    UserUpdate,
)

router = APIRouter(tags=["auth"])


def _team(team: Team) -> TeamRead:
    return TeamRead(
        id=team.id,
        name=team.name,
        description=team.description,
        members=sorted(m.email for m in team.members),
    )


@router.get("/me", response_model=UserRead)
def me(session: ReadSession, actor: Viewer) -> UserRead:
    from firetower.auth.models import User

    user = session.get(User, actor.user_id)
    return UserRead.model_validate(user)


@router.get("/users", response_model=list[UserRead])
def list_users(session: ReadSession, actor: Viewer) -> list[UserRead]:
    return [UserRead.model_validate(u) for u in service.list_users(session)]


@router.post("/users", status_code=status.HTTP_201_CREATED, response_model=UserRead)
def create_user(data: UserCreate, runtime: RuntimeDep, actor: Admin) -> UserRead:
    with runtime.transaction() as session:
        return UserRead.model_validate(service.create_user(session, actor, data))


@router.patch("/users/{user_id}", response_model=UserRead)
def update_user(
    user_id: Annotated[int, Path(ge=1, le=service.MAX_ID)],
    data: UserUpdate,
    runtime: RuntimeDep,
    actor: Admin,
) -> UserRead:
    """Deactivate (``{"active": false}``) or reactivate a user; admins only."""
    with runtime.transaction() as session:
        user = service.get_user(session, user_id)
        return UserRead.model_validate(service.set_active(session, actor, user, data.active))


@router.get("/teams", response_model=list[TeamRead])
def list_teams(session: ReadSession, actor: Viewer) -> list[TeamRead]:
    return [_team(t) for t in service.list_teams(session)]


@router.post("/teams", status_code=status.HTTP_201_CREATED, response_model=TeamRead)
def create_team(data: TeamCreate, runtime: RuntimeDep, actor: Admin) -> TeamRead:
    with runtime.transaction() as session:
        return _team(service.create_team(session, actor, data))


@router.get("/tokens", response_model=list[TokenRead])
def list_tokens(session: ReadSession, actor: Viewer) -> list[TokenRead]:
    return [TokenRead.model_validate(t) for t in service.list_tokens(session, actor)]


@router.post("/tokens", status_code=status.HTTP_201_CREATED, response_model=TokenCreated)
def create_token(
    data: TokenCreate, runtime: RuntimeDep, actor: Viewer, response: Response
) -> TokenCreated:
    """Make a token for yourself; its secret is in this answer and never shown again."""
    response.headers.update(NO_STORE)
    with runtime.transaction() as session:
        token, secret = service.create_token(session, actor, actor.label, data)
        return TokenCreated(**TokenRead.model_validate(token).model_dump(), token=secret)


@router.delete("/tokens/{token_id}", response_model=TokenRead)
def revoke_token(
    token_id: Annotated[int, Path(ge=1, le=service.MAX_ID)], runtime: RuntimeDep, actor: Viewer
) -> TokenRead:
    with runtime.transaction() as session:
        return TokenRead.model_validate(service.revoke_token(session, actor, token_id))

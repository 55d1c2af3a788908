"""Operations on users, teams and tokens; the only code that writes them."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from firetower import clock
from firetower.auth.models import ApiToken, Team, User
from firetower.auth.schemas import Role, TeamCreate, TokenCreate, UserCreate
from firetower.db import MAX_ID
from firetower.errors import Conflict, InvalidInput, NotFound, PermissionDenied, Unauthenticated

_hasher = PasswordHasher()
TOKEN_PREFIX = "ft_"  # noqa: S105 - a public marker, not a secret


@dataclass(frozen=True)
class Actor:
    """Who does something: a user (through a token or a web session) or firetower itself."""

    user_id: int | None
    label: str
    role: Role

    @classmethod
    def system(cls, label: str = "firetower") -> Actor:
        return cls(user_id=None, label=label, role=Role.admin)

    def require(self, needed: Role) -> None:
        if not self.role.allows(needed):
            raise PermissionDenied(
                f"this needs the {needed.value} role; you have {self.role.value}"
            )


def _need_admin(actor: Actor) -> None:
    actor.require(Role.admin)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def create_user(session: Session, actor: Actor, data: UserCreate) -> User:
    _need_admin(actor)
    email = data.email.lower()
    if session.scalar(select(User).where(User.email == email)) is not None:
        raise Conflict(f"a user with email {email} already exists", field="email")
    user = User(
        email=email,
        name=data.name or email.split("@")[0],
        role=data.role.value,
        password_hash=hash_password(data.password) if data.password else None,
        active=True,
        created_at=clock.now(),
    )
    session.add(user)
    session.flush()
    return user


def set_password(session: Session, actor: Actor, email: str, password: str) -> User:
    _need_admin(actor)
    if len(password) < 12:
        raise InvalidInput("a password needs at least 12 characters", field="password")
    user = get_user_by_email(session, email)
    user.password_hash = hash_password(password)
    user.session_epoch += 1  # a stolen or forgotten console session ends with the old password
    return user


def end_sessions(session: Session, user_id: int, session_epoch: int) -> None:
    """Log a user out of every console session.

    The console cookie is signed, not stored, so clearing one browser's copy would leave
    any other copy (another device, or a stolen one) good; moving the epoch ends them all.
    Only a still-valid session may do so, lest an old cookie log the user out elsewhere.
    """
    actor_for_user_id(session, user_id, session_epoch)
    user = session.get(User, user_id)
    assert user is not None  # actor_for_user_id found it
    user.session_epoch += 1


def get_user_by_email(session: Session, email: str, *, field: str = "email") -> User:
    """The user with this email (any case); NotFound names ``field``, the caller's input."""
    user = session.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None:
        raise NotFound(f"no user with email {email}", field=field)
    return user


def get_active_user_by_email(session: Session, email: str, *, field: str = "email") -> User:
    """As ``get_user_by_email``, for someone about to be given work (a role, a task): a
    deactivated user cannot log in to do it, so they are refused with a Conflict naming
    them and ``field``."""
    user = get_user_by_email(session, email, field=field)
    if not user.active:
        raise Conflict(
            f"{user.email} is deactivated; {field} must be an active user",
            field=field,
        )
    return user


def get_user(session: Session, user_id: int, *, field: str = "user_id") -> User:
    user = session.get(User, user_id) if 0 < user_id <= MAX_ID else None
    if user is None:
        raise NotFound(f"no user with id {user_id}", field=field)
    return user


def set_active(session: Session, actor: Actor, user: User, active: bool) -> User:
    """Deactivate or reactivate a user; doing what is already done changes nothing.

    A deactivation records who did it and when (the first one, if asked again); a
    reactivation clears both.

    Deactivation ends every console session of the user (the epoch moves) and stops their
    API tokens, which are checked against the user on every request. The last active admin
    is never deactivated: nobody would be left to reactivate anyone, bar the server's CLI.
    """
    _need_admin(actor)
    if not active and user.role == Role.admin.value:
        # Every active admin's row is locked, in id order and before the user's own, so two
        # admins deactivating each other at once on PostgreSQL are counted in turn (the
        # second sees the first's change) and never deadlock. SQLite serializes writers.
        admins = session.scalars(
            select(User.id)
            .where(User.role == Role.admin.value, User.active.is_(True))
            .order_by(User.id)
            .with_for_update()
        ).all()
        if list(admins) == [user.id]:
            raise Conflict(
                f"{user.email} is the last active admin; make another user an admin "
                "before deactivating them",
                field="active",
            )
    session.refresh(user, with_for_update=True)  # the committed state, locked until commit
    if user.active == active:
        return user
    user.active = active
    if active:
        user.deactivated_at = user.deactivated_by_id = user.deactivated_by = None
    else:
        user.session_epoch += 1
        user.deactivated_at = clock.now()
        user.deactivated_by_id = actor.user_id
        user.deactivated_by = actor.label
    return user


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.email)))


def authenticate_password(session: Session, email: str, password: str) -> User:
    """Check a login; the same error for a wrong email and a wrong password."""
    user = session.scalar(select(User).where(User.email == email.strip().lower()))
    refused = Unauthenticated("wrong email or password")
    if user is None or not user.active or not user.password_hash:
        _hasher.hash(password)  # spend the same time as a real check: no user enumeration
        raise refused
    try:
        _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        raise refused from None
    return user


def digest_secret(secret: str) -> str:
    """How a high-entropy secret (API token, ingest key) is stored: its SHA-256, never itself."""
    return hashlib.sha256(secret.encode()).hexdigest()


def _free_prefix(session: Session) -> str:
    """A new token's prefix, drawn again while another token (a revoked one too) holds it: a
    token is found by its prefix, which the table stores once, so a taken one would make the
    change fail as a conflict the user cannot act on."""
    while True:
        prefix = secrets.token_hex(6)
        if session.scalar(select(ApiToken.id).where(ApiToken.prefix == prefix)) is None:
            return prefix


def create_token(
    session: Session, actor: Actor, user_email: str, data: TokenCreate
) -> tuple[ApiToken, str]:
    """Make an API token; the plain secret is returned once and only its hash is stored."""
    user = get_user_by_email(session, user_email)
    if actor.user_id != user.id:
        _need_admin(actor)
    # A token never outranks its user, nor the credential that made it: a viewer-scoped
    # token of an admin must not mint itself an admin token.
    ceiling = min(Role(user.role), actor.role, key=lambda r: r.rank)
    role = data.role or ceiling
    if not ceiling.allows(role):
        raise InvalidInput(
            f"a token cannot have more power than its user and its maker ({ceiling.value})",
            field="role",
        )
    prefix = _free_prefix(session)
    secret = secrets.token_urlsafe(32)
    token = ApiToken(
        user_id=user.id,
        name=data.name,
        prefix=prefix,
        token_hash=digest_secret(secret),
        role=role.value,
        created_at=clock.now(),
    )
    session.add(token)
    session.flush()
    return token, f"{TOKEN_PREFIX}{prefix}_{secret}"


def revoke_token(session: Session, actor: Actor, token_id: int) -> ApiToken:
    token = session.get(ApiToken, token_id) if 0 < token_id <= MAX_ID else None
    if token is None:
        raise NotFound(f"no token with id {token_id}", field="token_id")
    if actor.user_id != token.user_id:
        _need_admin(actor)
    if token.revoked_at is None:
        token.revoked_at = clock.now()
    return token


def list_tokens(session: Session, actor: Actor) -> list[ApiToken]:
    query = select(ApiToken).order_by(ApiToken.id)
    if not actor.role.allows(Role.admin):
        query = query.where(ApiToken.user_id == actor.user_id)
    return list(session.scalars(query))


def authenticate_token(session: Session, presented: str) -> tuple[Actor, ApiToken]:
    """Resolve a bearer token to its actor, or raise Unauthenticated."""
    refused = Unauthenticated("invalid or revoked API token")
    if not presented.startswith(TOKEN_PREFIX) or presented.count("_") < 2:
        raise refused
    prefix, _, secret = presented.removeprefix(TOKEN_PREFIX).partition("_")
    token = session.scalar(select(ApiToken).where(ApiToken.prefix == prefix))
    if token is None or token.revoked_at is not None:
        raise refused
    if not hmac.compare_digest(token.token_hash, digest_secret(secret)):
        raise refused
    user = token.user
    if not user.active:
        raise refused
    # A token never outranks its user, even if the user was demoted after it was made.
    role = min(Role(token.role), Role(user.role), key=lambda r: r.rank)
    return Actor(user_id=user.id, label=user.email, role=role), token


def touch_token(session: Session, token_id: int) -> None:
    """Record when a token was last used (coarsely, so reads stay reads)."""
    session.execute(
        update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=clock.now())
    )


def actor_for_user_id(session: Session, user_id: int, session_epoch: int) -> Actor:
    """The actor of a console session, if the session is still valid for that user."""
    user = session.get(User, user_id) if 0 < user_id <= MAX_ID else None
    if user is None or not user.active or user.session_epoch != session_epoch:
        raise Unauthenticated("your session has ended; log in again")
    return Actor(user_id=user.id, label=user.email, role=Role(user.role))


def create_team(session: Session, actor: Actor, data: TeamCreate) -> Team:
    _need_admin(actor)
    if session.scalar(select(Team).where(Team.name == data.name)) is not None:
        raise Conflict(f"a team named {data.name} already exists", field="name")
    members = [get_user_by_email(session, email) for email in data.members]
    team = Team(name=data.name, description=data.description, created_at=clock.now())
    team.members = members
    session.add(team)
    session.flush()
    return team


def get_team(session: Session, name: str) -> Team:
    team = session.scalar(select(Team).where(Team.name == name))
    if team is None:
        raise NotFound(f"no team named {name}", field="team")
    return team


def ensure_team(session: Session, actor: Actor, name: str, description: str = "") -> Team:
    """Get or create a team by name (used by catalog imports).

    Naming an existing team is open to responders; creating or changing one needs an admin,
    as ``create_team`` does, so an import is no way around that rule.
    """
    team = session.scalar(select(Team).where(Team.name == name))
    if team is not None:
        if description and team.description != description:
            _need_admin(actor)
            team.description = description
        return team
    _need_admin(actor)
    team = Team(name=name, description=description, created_at=clock.now())
    session.add(team)
    session.flush()
    return team


def list_teams(session: Session) -> list[Team]:
    return list(session.scalars(select(Team).order_by(Team.name)))

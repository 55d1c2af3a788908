"""Signal endpoints: the integration admin API, and the intake endpoints senders post to.

Intake endpoints are public and authenticated by the integration key (in the path for
Alertmanager, Grafana and the generic webhook, ``routing_key`` in the body for PagerDuty, or
its ``X-Routing-Key`` header).
They speak their sender's protocol, not the firetower API, so they are left out of the
OpenAPI document; the PagerDuty ones answer in PagerDuty's own shapes so its client
libraries work unchanged. User reports are not intake: people file them signed in.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response, status
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from firetower.auth.deps import NO_STORE, Admin, ReadSession, Responder, RuntimeDep, Viewer
from firetower.auth.service import Actor
from firetower.clock import UtcDatetime
from firetower.errors import DomainError, Unauthenticated
from firetower.incidents.models import Incident
from firetower.problems import problem, validation_message
from firetower.runtime import Runtime
from firetower.settings import SeverityPolicy
from firetower.signals import intake_rows, service
from firetower.signals.models import Integration
from firetower.signals.schemas import (
    AlertGroupRead,
    AlertmanagerPayload,
    AlertRead,
    AlertSilenceCreate,
    AlertStatus,
    ChangeEventRead,
    GrafanaPayload,
    InhibitRuleIn,
    InhibitRuleRead,
    InhibitRulesReplace,
    IntegrationCreate,
    IntegrationKind,
    IntegrationRead,
    IntegrationWithKey,
    MaintenanceWindowCreate,
    MaintenanceWindowRead,
    PagerDutyChangeEvent,
    PagerDutyEvent,
    RejectedPayloadRead,
    ReportCreate,
    ReportRead,
    RouteTest,
    RouteTestResult,
    RoutingRuleCreate,
    RoutingRuleRead,
    RoutingRulesReplace,
    SilenceCreate,
    SilenceRead,
)
from firetower.text import NO_NUL

router = APIRouter(tags=["signals"])
intake_router = APIRouter(tags=["intake"], include_in_schema=False)


def _with_key(integration: Integration, key: str, response: Response) -> IntegrationWithKey:
    response.headers.update(NO_STORE)
    return IntegrationWithKey(**IntegrationRead.model_validate(integration).model_dump(), key=key)


@router.post(
    "/integrations", status_code=status.HTTP_201_CREATED, response_model=IntegrationWithKey
)
def create_integration(
    data: IntegrationCreate, runtime: RuntimeDep, actor: Admin, response: Response
) -> IntegrationWithKey:
    with runtime.transaction() as session:
        integration, key = service.create_integration(session, actor, data)
        return _with_key(integration, key, response)


@router.get("/integrations", response_model=list[IntegrationRead])
def list_integrations(session: ReadSession, actor: Admin) -> list[IntegrationRead]:
    return [IntegrationRead.model_validate(i) for i in service.list_integrations(session)]


@router.post("/integrations/{name}/rotate", response_model=IntegrationWithKey)
def rotate_integration_key(
    name: str, runtime: RuntimeDep, actor: Admin, response: Response
) -> IntegrationWithKey:
    with runtime.transaction() as session:
        integration, key = service.rotate_key(session, actor, name)
        return _with_key(integration, key, response)


@router.delete("/integrations/{name}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_integration(name: str, runtime: RuntimeDep, actor: Admin) -> Response:
    with runtime.transaction() as session:
        service.revoke(session, actor, name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/rejected-payloads", response_model=list[RejectedPayloadRead])
def list_rejected_payloads(
    session: ReadSession,
    actor: Admin,
    limit: Annotated[int, Query(ge=1, le=service.DEAD_LETTER_KEEP)] = 100,
) -> list[RejectedPayloadRead]:
    """The newest dead letters first; ``limit`` up to every one kept."""
    return [
        RejectedPayloadRead(
            id=row.id,
            integration_id=row.integration_id,
            integration=name,
            received_at=row.received_at,
            reason=row.reason,
            body=row.body.decode("utf-8", errors="replace"),
            received_bytes=row.received_bytes,
            truncated=service.kept_only_its_start(row),
        )
        for row, name in service.list_rejected(session, limit)
    ]


NameFilter = Annotated[str | None, Query(max_length=100, pattern=NO_NUL)]
"""A list's filter on a name (integration, service): no NUL, which PostgreSQL cannot hold."""


@router.get("/change-events", response_model=list[ChangeEventRead])
def list_change_events(
    session: ReadSession,
    actor: Viewer,
    integration: NameFilter = None,
    service_name: Annotated[NameFilter, Query(alias="service")] = None,
    since: UtcDatetime | None = None,
    until: UtcDatetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[ChangeEventRead]:
    """Deploys and config changes sent to ``/v2/change/enqueue``, newest first; filter by
    integration, service and the window of their ``timestamp`` (both ends included)."""
    return service.list_changes(
        session,
        integration=integration,
        service_name=service_name,
        since=since,
        until=until,
        limit=limit,
    )


class _DepthCheckedRoute(APIRoute):
    """A route that refuses a body nested deeper than the intake endpoints take, by the same
    name, before FastAPI's reader reads it (its answer was a generic 400)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handle_checked(request: Request) -> Response:
            if service.nests_too_deep(await request.body()):  # the reader gets it cached
                return problem(400, "Bad request", service.TOO_DEEP, field="body")
            return await handle(request)

        return handle_checked


def create_report(data: ReportCreate, runtime: RuntimeDep, actor: Viewer) -> ReportRead:
    """Report that something is broken; it opens or joins an incident like an alert does."""
    with runtime.transaction() as session:
        alert, intake = service.submit_report(
            session, actor, data, runtime.settings.severity_policy
        )
        joined = session.get(Incident, alert.incident_id) if alert.incident_id else None
        incident = intake.opened[0] if intake.opened else joined
        return ReportRead(
            id=alert.id,
            fingerprint=alert.fingerprint,
            service_name=alert.service_name,
            incident=incident.ref if incident is not None else None,
            opened=bool(intake.opened),
        )


router.add_api_route(
    "/reports",
    create_report,
    methods=["POST"],
    status_code=status.HTTP_201_CREATED,
    response_model=ReportRead,
    route_class_override=_DepthCheckedRoute,
)


# -- alerts and groups -------------------------------------------------------------------------
Limit = Annotated[int, Query(ge=1, le=1000)]


@router.get("/alerts", response_model=list[AlertRead])
def list_alerts(
    session: ReadSession,
    actor: Viewer,
    alert_status: Annotated[AlertStatus | None, Query(alias="status")] = None,
    integration: NameFilter = None,
    silenced: bool | None = None,
    flapping: bool | None = None,
    inhibited: bool | None = None,
    group_key: Annotated[str | None, Query(max_length=1024)] = None,
    incident: Annotated[str | None, Query(max_length=30)] = None,
    limit: Limit = 100,
) -> list[AlertRead]:
    """Alerts, last seen first; filter by status, integration, silenced, flapping, inhibited,
    group (a ``group_key`` of the alert groups) and incident (``INC-7``: the alerts that
    opened it or last joined it)."""
    return service.list_alerts(
        session,
        status=alert_status.value if alert_status is not None else None,
        integration=integration,
        silenced=silenced,
        flapping=flapping,
        inhibited=inhibited,
        group_key=group_key,
        incident=incident,
        limit=limit,
    )


@router.get("/alert-groups", response_model=list[AlertGroupRead])
def list_alert_groups(
    session: ReadSession,
    actor: Viewer,
    integration: NameFilter = None,
    limit: Limit = 100,
) -> list[AlertGroupRead]:
    """Alerts grouped by their integration's ``group_by`` label values, most recent first."""
    return service.list_groups(session, integration=integration, limit=limit)


def _set_alert_status(
    alert_id: int, status: AlertStatus, runtime: Runtime, actor: Actor
) -> AlertRead:
    with runtime.transaction() as session:
        policy = runtime.settings.severity_policy
        alert, _ = service.set_alert_status(session, actor, alert_id, status, policy)
        return service.alert_read(alert, alert.integration.name)


@router.post("/alerts/{alert_id}/acknowledge", response_model=AlertRead)
def acknowledge_alert(alert_id: int, runtime: RuntimeDep, actor: Responder) -> AlertRead:
    """Acknowledge an alert by hand: someone is on it. Already acknowledged: unchanged;
    resolved: 409. A later firing from its sender keeps it acknowledged."""
    return _set_alert_status(alert_id, AlertStatus.acknowledged, runtime, actor)


@router.post("/alerts/{alert_id}/resolve", response_model=AlertRead)
def resolve_alert(alert_id: int, runtime: RuntimeDep, actor: Responder) -> AlertRead:
    """Resolve an alert by hand, as its sender's resolve would: its incident's routing rule
    may then resolve the incident (``on_clear``). Already resolved: unchanged. A later
    firing from its sender fires it again."""
    return _set_alert_status(alert_id, AlertStatus.resolved, runtime, actor)


# -- silences and maintenance windows -----------------------------------------------------------
@router.post("/silences", status_code=status.HTTP_201_CREATED, response_model=SilenceRead)
def create_silence(data: SilenceCreate, runtime: RuntimeDep, actor: Responder) -> SilenceRead:
    with runtime.transaction() as session:
        return SilenceRead.model_validate(service.create_silence(session, actor, data))


@router.get("/silences", response_model=list[SilenceRead])
def list_silences(session: ReadSession, actor: Responder, all: bool = False) -> list[SilenceRead]:
    """The active and pending (starting later) silences, each with its ``state``;
    ``?all=true`` adds ended and expired ones."""
    return [
        SilenceRead.model_validate(s) for s in service.list_silences(session, include_inactive=all)
    ]


@router.post("/silences/{silence_id}/expire", response_model=SilenceRead)
def expire_silence(silence_id: int, runtime: RuntimeDep, actor: Responder) -> SilenceRead:
    with runtime.transaction() as session:
        return SilenceRead.model_validate(service.expire_silence(session, actor, silence_id))


@router.post(
    "/alerts/{alert_id}/silence", status_code=status.HTTP_201_CREATED, response_model=SilenceRead
)
def silence_alert(
    alert_id: int, data: AlertSilenceCreate, runtime: RuntimeDep, actor: Responder
) -> SilenceRead:
    with runtime.transaction() as session:
        return SilenceRead.model_validate(service.silence_alert(session, actor, alert_id, data))


@router.post(
    "/maintenance-windows",
    status_code=status.HTTP_201_CREATED,
    response_model=MaintenanceWindowRead,
)
def create_maintenance_window(
    data: MaintenanceWindowCreate, runtime: RuntimeDep, actor: Responder
) -> MaintenanceWindowRead:
    with runtime.transaction() as session:
        window = service.create_maintenance_window(session, actor, data)
        return MaintenanceWindowRead.model_validate(window)


@router.get("/maintenance-windows", response_model=list[MaintenanceWindowRead])
def list_maintenance_windows(session: ReadSession, actor: Responder) -> list[MaintenanceWindowRead]:
    return [
        MaintenanceWindowRead.model_validate(w) for w in service.list_maintenance_windows(session)
    ]


@router.delete("/maintenance-windows/{window_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_maintenance_window(window_id: int, runtime: RuntimeDep, actor: Responder) -> Response:
    with runtime.transaction() as session:
        service.delete_maintenance_window(session, actor, window_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# -- routing rules and inhibition rules ----------------------------------------------------------
RuleName = Annotated[str, Path(max_length=100)]


@router.get("/routing-rules", response_model=list[RoutingRuleRead])
def list_routing_rules(session: ReadSession, actor: Admin) -> list[RoutingRuleRead]:
    """The routing rules in the order they are tried."""
    return [service.routing_rule_read(r) for r in service.list_routing_rules(session)]


@router.put("/routing-rules", response_model=list[RoutingRuleRead])
def replace_routing_rules(
    data: RoutingRulesReplace, runtime: RuntimeDep, actor: Admin
) -> list[RoutingRuleRead]:
    """Replace the whole ordered list at once (also the way to reorder it)."""
    with runtime.transaction() as session:
        rules = service.replace_routing_rules(session, actor, data.rules)
        return [service.routing_rule_read(r) for r in rules]


@router.post("/routing-rules", status_code=status.HTTP_201_CREATED, response_model=RoutingRuleRead)
def create_routing_rule(
    data: RoutingRuleCreate, runtime: RuntimeDep, actor: Admin
) -> RoutingRuleRead:
    with runtime.transaction() as session:
        return service.routing_rule_read(service.create_routing_rule(session, actor, data))


@router.post("/routing-rules/test", response_model=RouteTestResult)
def test_routing_rules(data: RouteTest, session: ReadSession, actor: Responder) -> RouteTestResult:
    """Which rules an example alert would match, and what routing would do; stores nothing."""
    return service.explain_route(session, data)


@router.get("/routing-rules/{name}", response_model=RoutingRuleRead)
def get_routing_rule(name: RuleName, session: ReadSession, actor: Admin) -> RoutingRuleRead:
    return service.routing_rule_read(service.get_routing_rule(session, name))


@router.put("/routing-rules/{name}", response_model=RoutingRuleRead)
def replace_routing_rule(
    name: RuleName, data: RoutingRuleCreate, runtime: RuntimeDep, actor: Admin
) -> RoutingRuleRead:
    with runtime.transaction() as session:
        rule = service.replace_routing_rule(session, actor, name, data)
        return service.routing_rule_read(rule)


@router.delete("/routing-rules/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_routing_rule(name: RuleName, runtime: RuntimeDep, actor: Admin) -> Response:
    with runtime.transaction() as session:
        service.delete_routing_rule(session, actor, name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/inhibit-rules", response_model=list[InhibitRuleRead])
def list_inhibit_rules(session: ReadSession, actor: Admin) -> list[InhibitRuleRead]:
    return [InhibitRuleRead.model_validate(r) for r in service.list_inhibit_rules(session)]


@router.put("/inhibit-rules", response_model=list[InhibitRuleRead])
def replace_inhibit_rules(
    data: InhibitRulesReplace, runtime: RuntimeDep, actor: Admin
) -> list[InhibitRuleRead]:
    """Replace every inhibition rule at once."""
    with runtime.transaction() as session:
        rules = service.replace_inhibit_rules(session, actor, data.rules)
        return [InhibitRuleRead.model_validate(r) for r in rules]


@router.post("/inhibit-rules", status_code=status.HTTP_201_CREATED, response_model=InhibitRuleRead)
def create_inhibit_rule(data: InhibitRuleIn, runtime: RuntimeDep, actor: Admin) -> InhibitRuleRead:
    with runtime.transaction() as session:
        return InhibitRuleRead.model_validate(service.create_inhibit_rule(session, actor, data))


@router.get("/inhibit-rules/{name}", response_model=InhibitRuleRead)
def get_inhibit_rule(name: RuleName, session: ReadSession, actor: Admin) -> InhibitRuleRead:
    return InhibitRuleRead.model_validate(service.get_inhibit_rule(session, name))


@router.put("/inhibit-rules/{name}", response_model=InhibitRuleRead)
def replace_inhibit_rule(
    name: RuleName, data: InhibitRuleIn, runtime: RuntimeDep, actor: Admin
) -> InhibitRuleRead:
    with runtime.transaction() as session:
        rule = service.replace_inhibit_rule(session, actor, name, data)
        return InhibitRuleRead.model_validate(rule)


@router.delete("/inhibit-rules/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_inhibit_rule(name: RuleName, runtime: RuntimeDep, actor: Admin) -> Response:
    with runtime.transaction() as session:
        service.delete_inhibit_rule(session, actor, name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# -- intake ------------------------------------------------------------------------------------
def _messages(exc: ValidationError) -> list[dict[str, str]]:
    return [
        {"field": ".".join(str(p) for p in e["loc"]) or "body", "message": validation_message(e)}
        for e in exc.errors()
    ]


def _parse(model: type[BaseModel], data: Any) -> tuple[Any, list[dict[str, str]]]:
    try:
        return model.model_validate(data), []
    except ValidationError as exc:
        return None, _messages(exc)


def _parse_fast(model: type[BaseModel], body: bytes) -> Any:
    """The body validated straight from JSON bytes, or None when it must be refused (or
    holds an escaped NUL): the slow path then names the reason."""
    if b"\\u0000" in body or b"\x00" in body:
        return None
    try:
        return model.model_validate_json(body)
    except ValidationError:
        return None


def _refused(result: Any) -> Any:
    """An operation hands a refusal back instead of raising it (a raise would make its whole
    group run again one by one); it is raised here, in the request."""
    if isinstance(result, DomainError):
        raise result
    return result


@dataclass(frozen=True, slots=True)
class _Prepared:
    """What a batch's request works out before the group's transaction: its signals, and
    their values encoded for the database."""

    signals: list[service.Signal]
    encoder: intake_rows.Encoder
    drafts: service.Drafts | None = None


def _store_batch(
    policy: SeverityPolicy,
    key: str,
    body: bytes,
    kind: IntegrationKind,
    prepared: _Prepared | None,
    session: Session,
) -> Response | DomainError:
    """Alertmanager and Grafana, in the group's transaction: one batch of alerts."""
    try:
        integration = service.authenticate(session, key, kind)
    except Unauthenticated as exc:
        return exc
    if prepared is None:
        try:
            data = service.parse_json(body)
        except ValueError as exc:
            service.reject(session, integration, str(exc), body)
            return problem(400, "Bad request", str(exc), field="body")
        model = GrafanaPayload if kind == IntegrationKind.grafana else AlertmanagerPayload
        payload, errors = _parse(model, data)
        if errors:
            first = errors[0]
            reason = f"{first['field']}: {first['message']}"
            service.reject(session, integration, reason, body)
            return problem(422, "Invalid input", reason, field=first["field"], errors=errors)
        prepared = _prepare(session.get_bind().dialect.name, payload)
    intake = service.Intake(integration, policy, encoder=prepared.encoder, drafts=prepared.drafts)
    count = service.ingest_alertmanager(session, intake, prepared.signals)
    return JSONResponse(
        {"status": "success", "alerts": count, "opened": [i.ref for i in intake.opened]}
    )


def _prepare(dialect: str, payload: AlertmanagerPayload | GrafanaPayload) -> _Prepared:
    signals = service.alertmanager_signals(payload)
    encoder = intake_rows.Encoder(dialect)
    encoder.prepare(signals)
    return _Prepared(signals, encoder)


def _prepare_ahead(
    engine: Engine,
    policy: SeverityPolicy,
    key: str,
    payload: AlertmanagerPayload | GrafanaPayload,
) -> _Prepared:
    """``_prepare`` in the request, before the transaction, with the batch's rows drafted."""
    prepared = _prepare(engine.dialect.name, payload)
    drafts = service.draft_new_alerts(engine, key, prepared.signals, policy, prepared.encoder)
    return replace(prepared, drafts=drafts)


async def _batch(request: Request, key: str, kind: IntegrationKind) -> Response:
    runtime: Runtime = request.app.state.runtime
    body = await request.body()
    model = GrafanaPayload if kind == IntegrationKind.grafana else AlertmanagerPayload
    # Parsed, turned into signals and encoded before the group's transaction: the write
    # lock is not held meanwhile (other processes may write). Only a refused body is parsed
    # again there, for the precise reason.
    parsed = _parse_fast(model, body)
    policy = runtime.settings.severity_policy
    engine = runtime.database.engine
    prepared = None if parsed is None else _prepare_ahead(engine, policy, key, parsed)
    operation = partial(_store_batch, policy, key, body, kind, prepared)
    weight = len(prepared.signals) if prepared is not None else 1
    return _refused(await runtime.group.run(operation, weight=weight))


@intake_router.post("/ingest/alertmanager/{key}")
async def alertmanager_webhook(key: str, request: Request) -> Response:
    """Alertmanager's webhook receiver (payload version 4)."""
    return await _batch(request, key, IntegrationKind.alertmanager)


@intake_router.post("/ingest/grafana/{key}")
async def grafana_webhook(key: str, request: Request) -> Response:
    """Grafana unified alerting's webhook contact point."""
    return await _batch(request, key, IntegrationKind.grafana)


def _store_generic(
    policy: SeverityPolicy, key: str, body: bytes, session: Session
) -> Response | DomainError:
    try:
        integration = service.authenticate(session, key, IntegrationKind.generic)
    except Unauthenticated as exc:
        return exc
    try:
        data = service.parse_json(body)
    except ValueError as exc:
        service.reject(session, integration, str(exc), body)
        return problem(400, "Bad request", str(exc), field="body")
    try:
        signal = service.generic_signal(session, integration, data)
    except service.MappingMiss as exc:
        service.reject(session, integration, str(exc), body)
        return problem(422, "Invalid input", str(exc), field=exc.field)
    intake = service.Intake(integration, policy)
    alert = service.ingest_generic(session, intake, signal)
    return JSONResponse(
        {
            "status": "success",
            "alerts": 1,
            "dedup_key": alert.fingerprint,
            "opened": [i.ref for i in intake.opened],
        }
    )


@intake_router.post("/ingest/generic/{key}")
async def generic_webhook(key: str, request: Request) -> Response:
    """Any JSON document, read with the integration's JMESPath mapping."""
    runtime: Runtime = request.app.state.runtime
    body = await request.body()
    operation = partial(_store_generic, runtime.settings.severity_policy, key, body)
    return _refused(await runtime.group.run(operation))


PAGERDUTY_PATHS = "/v2/"
"""Where the PagerDuty Events API lives: every refusal there is in its shape."""


def speaks_pagerduty(path: str) -> bool:
    return path.startswith(PAGERDUTY_PATHS)


def pagerduty_refusal(status_code: int, *errors: str) -> JSONResponse:
    """A refusal as PagerDuty's Events API words it, for its client libraries to read."""
    return JSONResponse(
        {"status": "invalid event", "message": "Event object is invalid", "errors": list(errors)},
        status_code=status_code,
    )


ROUTING_KEY_HEADER = "X-Routing-Key"
"""Where older PagerDuty clients (pdpyras's EventsAPISession, some JS ones) send the routing
key instead of the body; PagerDuty takes it there when the body has none."""

KEYS_DIFFER = (
    f"'routing_key' in the body and the {ROUTING_KEY_HEADER} header differ "
    "(send one of them, or the same key in both)"
)


def _routing_key(body: bytes, header: str | None) -> tuple[Any, str | JSONResponse]:
    """The event document and its routing key (the body's, else the ``X-Routing-Key``
    header's, then put in the document for the model to read), or PagerDuty's refusal when
    either is bad. A header that disagrees with the body's key is refused: neither can be
    taken as the one the sender meant."""
    try:
        data = service.parse_json(body)
    except ValueError as exc:
        return None, pagerduty_refusal(400, str(exc))
    key = data.get("routing_key") if isinstance(data, dict) else None
    if header is not None:
        if key is None:  # absent (or null)
            key = header
            if isinstance(data, dict):
                data = {**data, "routing_key": header}
        elif key != header:
            return data, pagerduty_refusal(400, KEYS_DIFFER)
    if not isinstance(key, str):
        return data, pagerduty_refusal(400, "'routing_key' is missing or not a string")
    if len(key) != service.KEY_LENGTH:
        return data, pagerduty_refusal(
            400, f"Length of 'routing_key' is incorrect (should be {service.KEY_LENGTH} characters)"
        )
    return data, key


@dataclass(frozen=True, slots=True)
class _PagerDutyItem:
    """One Events v2 request, as its operation in the group's transaction needs it."""

    policy: SeverityPolicy
    body: bytes
    change: bool
    key: str
    event: PagerDutyEvent | PagerDutyChangeEvent | None
    """Parsed before the transaction; None when it must be refused (``data`` says why)."""
    data: Any


def _store_pagerduty(session: Session, items: list[_PagerDutyItem]) -> list[Response]:
    """Events v2 requests of one group, in its transaction: each is checked and answered on
    its own, and the alert events of each integration are recorded together."""
    answers: list[Response | None] = [None] * len(items)
    accepted: dict[int, tuple[Integration, SeverityPolicy, list[tuple[int, PagerDutyEvent]]]] = {}
    for index, item in enumerate(items):
        integration = service.find_by_key(session, item.key)
        if integration is None or integration.kind != IntegrationKind.pagerduty:
            answers[index] = pagerduty_refusal(401, "Invalid routing key")
            continue
        event = item.event
        messages: list[str] = []
        if event is None:
            model = PagerDutyChangeEvent if item.change else PagerDutyEvent
            event, errors = _parse(model, item.data)
            messages = [f"{e['field']}: {e['message']}" for e in errors]
        if isinstance(event, PagerDutyEvent):
            messages = service.pagerduty_errors(event)
        if messages:
            reason = "; ".join(messages)
            service.reject(session, integration, reason, item.body, secret=item.key)
            answers[index] = pagerduty_refusal(400, *messages)
        elif isinstance(event, PagerDutyChangeEvent):
            service.store_change(session, integration, event)
            answers[index] = JSONResponse(
                {"status": "success", "message": "Change event processed"}, status_code=202
            )
        else:
            assert isinstance(event, PagerDutyEvent)
            found = accepted.setdefault(integration.id, (integration, item.policy, []))
            found[2].append((index, event))
    # Their services are locked in name order (ingest_pagerduty_batches), in whatever order
    # the requests came.
    intakes = [
        (service.Intake(integration, policy), events)
        for integration, policy, events in accepted.values()
    ]
    recorded = service.ingest_pagerduty_batches(
        session, [(intake, [e for _, e in events]) for intake, events in intakes]
    )
    for (_, events), dedup_keys in zip(intakes, recorded, strict=True):
        for (index, _), dedup_key in zip(events, dedup_keys, strict=True):
            answers[index] = JSONResponse(
                {"status": "success", "message": "Event processed", "dedup_key": dedup_key},
                status_code=202,
            )
    assert all(answer is not None for answer in answers)
    return [answer for answer in answers if answer is not None]


async def _pagerduty(request: Request, change: bool) -> Response:
    runtime: Runtime = request.app.state.runtime
    body = await request.body()
    header = request.headers.get(ROUTING_KEY_HEADER) or None  # never logged nor kept
    model = PagerDutyChangeEvent if change else PagerDutyEvent
    # custom_details takes any JSON, and pydantic's reader takes NaN and Infinity too: a
    # body that may hold them goes the slow way, whose reader refuses them. It also makes
    # 1e400 infinite and nests 201 deep: the parts that take any JSON are checked for those.
    maybe_not_json = b"NaN" in body or b"Infinity" in body
    event = None if maybe_not_json else _parse_fast(model, body)
    if (
        event is not None
        and len(event.routing_key) == service.KEY_LENGTH
        and header in (None, event.routing_key)
        and service.free_json_fits(event)
    ):
        key, data = event.routing_key, None
    else:  # the slow path names what is wrong (or takes the key from the header)
        event = None
        data, checked = _routing_key(body, header)
        if isinstance(checked, JSONResponse):
            return checked
        key = checked
    policy = runtime.settings.severity_policy
    item = _PagerDutyItem(policy, body, change, key, event, data)
    return await runtime.group.run_batched(_store_pagerduty, item)


@intake_router.post("/v2/enqueue")
async def pagerduty_enqueue(request: Request) -> Response:
    """PagerDuty Events API v2: trigger, acknowledge or resolve an alert."""
    return await _pagerduty(request, change=False)


@intake_router.post("/v2/change/enqueue")
async def pagerduty_change_enqueue(request: Request) -> Response:
    """PagerDuty change events: stored for analysis, never open an incident."""
    return await _pagerduty(request, change=True)

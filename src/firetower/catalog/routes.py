"""REST API for the catalog: services, dependencies, features, customers, blast radius."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from firetower.auth.deps import Admin, ReadSession, Responder, RuntimeDep, Viewer
from firetower.catalog import importer, service
from firetower.catalog.schemas import (
    BlastRadius,
    CatalogImport,
    CustomerCreate,
    CustomerRead,
    DependencyCreate,
    DependencyRead,
    FeatureCreate,
    FeatureRead,
    ImportReport,
    ServiceCreate,
    ServiceRead,
    ServiceUpdate,
)

router = APIRouter(tags=["catalog"])


@router.get("/services", response_model=list[ServiceRead])
def list_services(session: ReadSession, actor: Viewer) -> list[ServiceRead]:
    return [service.read_service(session, s) for s in service.list_services(session)]


@router.post("/services", status_code=status.HTTP_201_CREATED, response_model=ServiceRead)
def create_service(data: ServiceCreate, runtime: RuntimeDep, actor: Responder) -> ServiceRead:
    with runtime.transaction() as session:
        created = service.create_service(session, actor, data)
        return service.read_service(session, created)


@router.get("/services/{name}", response_model=ServiceRead)
def show_service(name: str, session: ReadSession, actor: Viewer) -> ServiceRead:
    return service.read_service(session, service.get_service(session, name))


@router.patch("/services/{name}", response_model=ServiceRead)
def update_service(
    name: str, data: ServiceUpdate, runtime: RuntimeDep, actor: Responder
) -> ServiceRead:
    with runtime.transaction() as session:
        updated = service.update_service(session, actor, name, data)
        return service.read_service(session, updated)


@router.delete("/services/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_service(name: str, runtime: RuntimeDep, actor: Admin) -> Response:
    with runtime.transaction() as session:
        service.delete_service(session, actor, name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/dependencies", response_model=list[DependencyRead])
def list_dependencies(session: ReadSession, actor: Viewer) -> list[DependencyRead]:
    return service.list_dependencies(session)


@router.post("/dependencies", status_code=status.HTTP_201_CREATED, response_model=DependencyRead)
def add_dependency(data: DependencyCreate, runtime: RuntimeDep, actor: Responder) -> DependencyRead:
    with runtime.transaction() as session:
        service.add_dependency(session, actor, data.service, data.depends_on)
    return DependencyRead(service=data.service, depends_on=data.depends_on)


@router.delete("/dependencies/{service_name}/{depends_on}", status_code=status.HTTP_204_NO_CONTENT)
def remove_dependency(
    service_name: str, depends_on: str, runtime: RuntimeDep, actor: Responder
) -> Response:
    with runtime.transaction() as session:
        service.remove_dependency(session, actor, service_name, depends_on)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/features", response_model=list[FeatureRead])
def list_features(session: ReadSession, actor: Viewer) -> list[FeatureRead]:
    return service.list_features(session)


@router.put("/features", response_model=FeatureRead)
def put_feature(data: FeatureCreate, runtime: RuntimeDep, actor: Responder) -> FeatureRead:
    with runtime.transaction() as session:
        feature = service.upsert_feature(session, actor, data)
        return service.read_feature(feature)


@router.get("/customers", response_model=list[CustomerRead])
def list_customers(session: ReadSession, actor: Viewer) -> list[CustomerRead]:
    return service.list_customers(session)


@router.put("/customers", response_model=CustomerRead)
def put_customer(data: CustomerCreate, runtime: RuntimeDep, actor: Responder) -> CustomerRead:
    with runtime.transaction() as session:
        customer = service.upsert_customer(session, actor, data)
        return service.read_customer(customer)


@router.get("/blast-radius", response_model=BlastRadius)
def blast_radius(
    session: ReadSession,
    actor: Viewer,
    service_names: Annotated[list[str], Query(alias="service", min_length=1)],
) -> BlastRadius:
    return service.blast_radius(session, service_names)


@router.post("/catalog/import", response_model=ImportReport)
def import_catalog(data: CatalogImport, runtime: RuntimeDep, actor: Responder) -> ImportReport:
    """Apply a firetower ``catalog:`` block or Backstage ``catalog-info.yaml``; all or nothing."""
    with runtime.transaction() as session:
        return importer.import_catalog(session, actor, data.content, data.format)

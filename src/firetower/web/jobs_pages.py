"""The jobs page (admins): dead-lettered jobs, why they died, and a button to retry them."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from firetower.auth.deps import Admin
from firetower.errors import NotFound
from firetower.jobs import JobRead, dead_letters, retry_dead
from firetower.runtime import Runtime
from firetower.web.templating import flash, render

router = APIRouter(include_in_schema=False)


@router.get("/jobs")
def jobs_page(request: Request, actor: Admin) -> Response:
    runtime: Runtime = request.app.state.runtime
    with runtime.read() as session:
        jobs = [JobRead.model_validate(job) for job in dead_letters(session)]
    return render(request, "jobs.html", {"jobs": jobs}, actor=actor)


@router.post("/jobs/{job_id}/retry")
def retry_job(request: Request, job_id: int, actor: Admin) -> Response:
    runtime: Runtime = request.app.state.runtime
    with runtime.transaction() as session:
        if not retry_dead(session, job_id):
            raise NotFound(f"no dead-lettered job {job_id}", field="job_id")
    flash(request, f"Job {job_id} is queued again with a fresh attempt budget.")
    return RedirectResponse("/jobs", status_code=303)

"""The provider portal: a page that renders the package's Questionnaire with
LHC-Forms (served from ``/static``, no CDN) and submits the exported response
to ``$evaluate``.

The page is a DTR client of this same service: it asks
``$questionnaire-package`` for the form (by canonical, or by the ``context``
of a pended request), merges the draft response the payer prefilled, and
lets LHC-Forms expand each answer list with ``ValueSet/$expand``. It calls
the API with the signed-in session (cookie) and the session's CSRF token;
without a session it sends the browser to ``/signin``.

It is where a prescriber's office works (``static/portal.js``): the patient
(name, member id, birth date) and the prescriber (name, NPI with its check
digit) are named before a form opens, and go in the response where
``review.request`` reads them; the birth date answers the form's birth-date
question (shown read-only); drafts are kept on the server
(``service.office``: ``/?draft={id}`` reopens one); Submit sends one
response per form session, so pressing it twice makes one determination;
the result comes at the top of the page in plain words with its notice
inline, the missing questions highlighted in the form; the office's
earlier requests are listed (``/?view=history``, ``/?result={id}``); a print
stylesheet prints the result and the notice alone.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from review.request import BIRTH_DATE_EXTENSION, PRIORITY_EXTENSION
from service.auth import Caller
from service.http import Service


def router(service: Service) -> APIRouter:
    api = APIRouter()
    templates = Environment(
        loader=PackageLoader("service", "templates"), autoescape=select_autoescape(["html", "j2"])
    )
    static = Path(str(resources.files("service") / "static"))

    @api.get("/", response_class=HTMLResponse)
    def portal(request: Request, identity: Caller) -> Response:
        if identity is None or identity.kind != "user":
            here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/signin?next={quote(here, safe='')}", 303)
        lforms_ready = (static / "lforms" / "VERSION").exists()
        entries = sorted(
            (
                {"id": q["id"], "title": q["title"], "canonical": f"{q['url']}|{q['version']}"}
                for q in service.questionnaires.values()
            ),
            key=lambda e: e["id"],
        )
        page = templates.get_template("portal.html.j2").render(
            questionnaires=entries,
            lforms_ready=lforms_ready,
            user=identity,
            csrf=identity.csrf,
            priority_extension=PRIORITY_EXTENSION,
            birth_date_extension=BIRTH_DATE_EXTENSION,
        )
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    return api

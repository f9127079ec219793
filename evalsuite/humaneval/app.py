"""The rater web form: FastAPI, server-rendered HTML, one secret link per rater.

Routes (TOKEN is the rater's secret from `evalsuite raters add`; ids are the bundle's opaque hex ids):
    GET  /r/TOKEN              overview and progress; resume point
    GET  /r/TOKEN/p/PAIR       one pair: prompt, left and right (audio player, text), the choice form
    POST /r/TOKEN/p/PAIR       vote: choice=left|right|tie, comment (optional), rev (the form's revision)
    GET  /r/TOKEN/a/AUDIO      audio of a side of an assigned pair
The secret in the path doubles as CSRF protection (another site cannot know it). The app reads only the bundle's
served files (bundle.json, items.jsonl, audio/); it never opens the key. There are no admin routes: raters are
created with the CLI.

A vote's body is read only after its link and pair are checked, and at most MAX_BODY bytes of it, counted while it
streams (a chunked upload has no Content-Length to refuse it by): a stranger cannot make the server read 64 MB.
`app_from_env` builds the app in each worker process of `evalsuite raters serve --workers N`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from evalsuite.humaneval import db
from evalsuite.humaneval.bundle import load_served
from evalsuite.humaneval.pages import render

TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
ID_RE = re.compile(r"^[0-9a-f]{24}$")
MAX_BODY = 64 * 1024
FORM_TYPE = "application/x-www-form-urlencoded"
BUNDLE_ENV, DB_ENV = "EVALSUITE_RATER_BUNDLE", "EVALSUITE_RATER_DB"  # what app_from_env serves

SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; media-src 'self'; form-action 'self'",
}


def create_app(bundle_dir: Path, db_url: str) -> FastAPI:
    bundle = load_served(bundle_dir)
    engine = db.make_engine(db_url, write=True)
    db.register_bundle(engine, bundle.bundle_id, bundle.task, len(bundle.items))
    audio_owner = {it[s]["audio"]: pid for pid, it in bundle.items.items() for s in ("left", "right") if it[s]["audio"]}

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def limits_and_headers(request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            response = _error(413, f"request body: at most {MAX_BODY} bytes")
        else:
            response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    @app.exception_handler(HTTPException)
    async def http_error(_request, exc: HTTPException):
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request, exc: RequestValidationError):
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'form'}: {e['msg']}" for e in exc.errors())
        return _error(422, problems)

    def rater_of(token: str):
        rater = db.rater_for_token(engine, bundle.bundle_id, token) if TOKEN_RE.match(token) else None
        if rater is None:
            raise HTTPException(403, "unknown link: open the personal link you were given")
        return rater

    def assigned_pair(rater, pair_id: str, order: list[str]) -> dict:
        if not ID_RE.match(pair_id) or pair_id not in bundle.items:
            raise HTTPException(404, "no such pair")
        if pair_id not in order:
            raise HTTPException(403, "this pair is not assigned to you")
        return bundle.items[pair_id]

    @app.get("/", response_class=HTMLResponse)
    def root():
        raise HTTPException(401, "open the personal link you were given")

    @app.get("/r/{token}", response_class=HTMLResponse)
    def overview(token: str):
        rater = rater_of(token)
        order, cast = db.rater_state(engine, rater.id)
        nxt = next((p for p in order if p not in cast), None)
        return render(
            "overview.html",
            base=f"/r/{token}",
            done=len(cast),
            total=len(order),
            next=nxt,
            pairs=[(p, p in cast) for p in order],
        )

    @app.get("/r/{token}/p/{pair_id}", response_class=HTMLResponse)
    def pair_page(token: str, pair_id: str):
        rater = rater_of(token)
        order, cast = db.rater_state(engine, rater.id)
        item = assigned_pair(rater, pair_id, order)
        i = order.index(pair_id)
        return render(
            "pair.html",
            base=f"/r/{token}",
            item=item,
            position=i + 1,
            total=len(order),
            done=len(cast),
            current=cast.get(pair_id),
            prev=order[i - 1] if i > 0 else None,
            next=order[i + 1] if i + 1 < len(order) else None,
            max_comment=db.MAX_COMMENT,
        )

    @app.post("/r/{token}/p/{pair_id}")
    async def vote(token: str, pair_id: str, request: Request):
        rater = await run_in_threadpool(rater_of, token)  # the link first: a stranger's body is never read
        order, cast = await run_in_threadpool(db.rater_state, engine, rater.id)
        assigned_pair(rater, pair_id, order)
        choice, rev, comment = _vote_fields(await _read_form(request))
        try:
            await run_in_threadpool(db.cast_vote, engine, rater.id, pair_id, choice, comment.strip(), rev)
        except db.VoteError as e:
            raise HTTPException(e.status, str(e)) from None
        cast = {**cast, pair_id: None}  # the next unanswered pair, counting this vote
        i = order.index(pair_id)
        nxt = next((p for p in order[i + 1 :] + order[:i] if p not in cast), None)
        target = f"/r/{token}/p/{nxt}" if nxt else f"/r/{token}"
        return RedirectResponse(target, status_code=303)

    @app.get("/r/{token}/a/{audio_id}")
    def audio(token: str, audio_id: str):
        rater = rater_of(token)
        order, _ = db.rater_state(engine, rater.id)
        if not ID_RE.match(audio_id) or audio_id not in audio_owner:
            raise HTTPException(404, "no such audio")
        assigned_pair(rater, audio_owner[audio_id], order)
        return FileResponse(bundle.audio_path(audio_id), media_type="audio/wav")

    return app


def app_from_env() -> FastAPI:
    """The app for the bundle and store named by $EVALSUITE_RATER_BUNDLE and $EVALSUITE_RATER_DB (a uvicorn factory:
    every worker process builds its own)."""
    return create_app(Path(os.environ[BUNDLE_ENV]), os.environ[DB_ENV])


async def _read_form(request: Request) -> dict[str, list[str]]:
    """The urlencoded form of a request, read chunk by chunk and refused (413) past MAX_BODY bytes."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise HTTPException(413, f"request body: at most {MAX_BODY} bytes")
    if body and request.headers.get("content-type", "").split(";")[0].strip().lower() != FORM_TYPE:
        raise HTTPException(415, f"expected a form ({FORM_TYPE})")
    try:
        return parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False, max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        raise HTTPException(400, "the form is not UTF-8 urlencoded text with at most 10 fields") from None


def _vote_fields(form: dict[str, list[str]]) -> tuple[str, int, str]:
    """(choice, rev, comment) of a vote form; 422 naming what is missing or malformed."""
    problems = [f"{name}: field required" for name in ("choice", "rev") if not form.get(name)]
    rev = (form.get("rev") or ["0"])[0]
    if form.get("rev") and not re.fullmatch(r"\d{1,9}", rev.strip()):
        problems.append("rev: expected a whole number")
    if problems:
        raise HTTPException(422, "; ".join(problems))
    return form["choice"][0], int(rev), (form.get("comment") or [""])[0]


def _error(status: int, message: str) -> HTMLResponse:
    return HTMLResponse(render("error.html", status=status, message=message), status_code=status)

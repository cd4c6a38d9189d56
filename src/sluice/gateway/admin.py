"""Key management over HTTP (``/api/admin/keys``) and the operators' login (``/login``).

The guard has already checked the caller: the admin API needs a viewer's credential to list
and an operator's to create and revoke; the login page is public. A new key is in the answer
to its creation and nowhere else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from starlette.requests import ClientDisconnect, Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from sluice.access.control import COOKIE_LIFETIME, COOKIE_NAME
from sluice.access.keys import KeyError_
from sluice.errors import BadRequest, SluiceError
from sluice.gateway.pages import render_page, who_of
from sluice.gateway.responses import JSONResponse, error_response

if TYPE_CHECKING:
    from sluice.gateway.app import Gateway

#: the largest login form read
_LOGIN_BODY_LIMIT = 4096


def _options(body: dict[str, Any]) -> dict[str, Any]:
    """The options of a new key from an admin request's JSON body."""
    models = body.get("models", [])
    if isinstance(models, str):
        models = [m.strip() for m in models.split(",")]
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
        raise BadRequest("'models' must be a list of model globs")
    options: dict[str, Any] = {"models": models, "tenant": body.get("tenant") or ""}
    if not isinstance(options["tenant"], str):
        raise BadRequest("'tenant' must be a string")
    for name, kind in (
        ("budget", float),
        ("rpm", int),
        ("tpm", int),
        ("max_streams", int),
        ("expires", float),
    ):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BadRequest(f"'{name}' must be a number")
        if kind is int and value != int(value):
            raise BadRequest(f"'{name}' must be a whole number")
        options["expires_in" if name == "expires" else name] = kind(value)
    return options


class Admin:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def list_keys(self, request: Request) -> Response:
        keys = self.gateway.keys.keys()
        return JSONResponse({"keys": [k.public() for k in keys]})

    async def get_key(self, request: Request) -> Response:
        key = self.gateway.keys.get(request.path_params["name"])
        if key is None:
            return error_response("native", 404, "not_found", "no such key")
        return JSONResponse(key.public())

    async def create_key(self, request: Request) -> Response:
        try:
            body = await self.gateway.read_json(request)
            name = body.get("name")
            if not isinstance(name, str):
                raise BadRequest("'name' is required: a string")
            role = body.get("role", "client")
            if not isinstance(role, str):
                raise BadRequest("'role' must be a string")
            raw, key = await self.gateway.keys.create(name, role, **_options(body))
        except SluiceError as exc:
            return error_response("native", exc.status, exc.type, exc.message)
        return JSONResponse({**key.public(), "key": raw}, status_code=201)

    async def revoke_key(self, request: Request) -> Response:
        try:
            key = await self.gateway.keys.revoke(request.path_params["name"])
        except KeyError_ as exc:
            return error_response("native", exc.status, exc.type, exc.message)
        return JSONResponse(key.public())

    # -- the login page -------------------------------------------------------------------------

    async def login_page(self, request: Request) -> Response:
        return render_page(
            "login.html",
            {"next": _safe_next(request.query_params.get("next")), "who": who_of(request)},
        )

    async def login(self, request: Request) -> Response:
        body = b""
        try:
            async for chunk in request.stream():
                body += chunk
                if len(body) > _LOGIN_BODY_LIMIT:
                    return render_page(
                        "login.html",
                        {"next": "/ops", "error": "The form is too large."},
                        status=413,
                    )
        except ClientDisconnect:  # gone, or cut by the body timeout (the server said 408)
            return Response(status_code=408)
        form = parse_qs(body.decode("utf-8", "replace"), max_num_fields=4)
        raw = (form.get("key") or [""])[0].strip()
        target = _safe_next((form.get("next") or [""])[0])
        try:
            _, cookie = self.gateway.keys.login(raw)
        except SluiceError as exc:
            return render_page(
                "login.html", {"next": target, "error": exc.message}, status=exc.status
            )
        response = RedirectResponse(target, status_code=303)
        secure = request.url.scheme == "https" or self.gateway.settings.auth.secure_cookies
        response.set_cookie(
            COOKIE_NAME,
            cookie,
            max_age=int(COOKIE_LIFETIME),
            path="/",
            httponly=True,
            samesite="strict",
            secure=secure,
        )
        return response

    async def logout(self, request: Request) -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="strict")
        return response


def _safe_next(target: str | None) -> str:
    """Where to go after the login: a path of this gateway only (never another site)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/ops"
    return target


def admin_routes(gateway: Gateway) -> list[BaseRoute]:
    admin = Admin(gateway)
    return [
        Route("/api/admin/keys", admin.list_keys, methods=["GET"]),
        Route("/api/admin/keys", admin.create_key, methods=["POST"]),
        Route("/api/admin/keys/{name}", admin.get_key, methods=["GET"]),
        Route("/api/admin/keys/{name}", admin.revoke_key, methods=["DELETE"]),
        Route("/login", admin.login_page, methods=["GET"]),
        Route("/login", admin.login, methods=["POST"]),
        Route("/logout", admin.logout, methods=["POST"]),
    ]

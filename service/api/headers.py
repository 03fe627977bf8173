"""Response headers every answer carries, and those of HTML pages.

- every response: `X-Content-Type-Options: nosniff` (a JSON answer is never run as script) and
  `Referrer-Policy: no-referrer`;
- `/v1/...` answers: `Cache-Control: no-store`, because they carry texts a tenant may see and a
  shared cache must not keep;
- HTML (the workspace, /docs, /redoc): no framing (`X-Frame-Options: DENY` beside the CSP's
  `frame-ancestors 'none'`), no opener across origins, no powerful browser features. The
  workspace sets its own strict CSP (service/web/routes.py); an HTML page without one gets
  `frame-ancestors 'none'` at least.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

EVERY_RESPONSE = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
API_RESPONSE = {"Cache-Control": "no-store"}
HTML_PAGE = {
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
    "Content-Security-Policy": "frame-ancestors 'none'; object-src 'none'; base-uri 'none'",
}


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        api = scope["path"].startswith("/v1/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                extra = dict(EVERY_RESPONSE)
                if api:
                    extra |= API_RESPONSE
                if headers.get("content-type", "").startswith("text/html"):
                    extra |= HTML_PAGE
                for name, value in extra.items():
                    if name not in headers:  # a page's own (stricter) value wins
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, with_headers)

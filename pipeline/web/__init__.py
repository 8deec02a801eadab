"""Sphere's HTTP side: one ASGI app (Starlette) served by uvicorn, in one process.

`app.create_app` builds the app from routes (the webhook's today, the studio's later);
`server.Server` serves it with a whole-request deadline, so a slow client holds only its
own connection, never anyone else's request. (Nothing is imported here: commands that
never serve do not pay for loading uvicorn.)"""

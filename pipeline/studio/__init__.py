"""Sphere Studio: a local web app (Starlette on uvicorn, Jinja pages, HTMX) over the same
library the CLI uses. It only parses input, calls a library function and renders."""

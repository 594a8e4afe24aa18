"""The studio's web UI: server-rendered pages (Jinja2) with HTMX and a little plain JavaScript.

Pages are shells that hold no private data; everything they show comes from `/api` (the page
fragments under `/api/ui/...` and the JSON APIs), so gateway keys protect the UI's data exactly as
they protect every other client's. Front-end libraries are vendored in `static/vendor` (no build step).
"""

"""The Docker Engine API (and berth's own namespace endpoints) over aiohttp.

One module per resource; handlers are thin: parse the request, call a service in a worker
thread, shape the answer as docker does. Errors become JSON {"message": ...} with the status
of their kind (berth.errors).
"""

"""The REST API (/v1, OpenAPI at /openapi.json): a thin HTTP layer over services/.

app.py builds the FastAPI app, errors.py maps the exception hierarchy to 4xx answers,
deps.py gives handlers the service context and checks the bearer token, routers/ has one
module per resource, views.py turns store objects into response schemas.
"""

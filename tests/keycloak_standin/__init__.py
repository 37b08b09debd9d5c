"""A stand-in for one Keycloak realm, for the authentication tests and for trying auth locally (developer tool).

Not part of the app: a real deployment points MONAI Label at a real Keycloak realm (``monailabel_app/README.md``).
Run it from the repository root with ``PYTHONPATH=tests python -m keycloak_standin.issuer --port 8080``.
"""

"""The REST API: 1:1 verification, 1:N identification and enrolment over HTTP (``facefit serve``).

``create_app(settings)`` builds the FastAPI application; nothing is loaded at
import time. The model and the gallery are opened in the app's lifespan and
reach the routers as ``Annotated`` dependencies (``deps.py``). Needs the
``[serve]`` extra (FastAPI, uvicorn, python-multipart, pydantic-settings).
"""

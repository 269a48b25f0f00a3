"""The web API and the operator dashboard of ``v2ghub serve`` (FastAPI on uvicorn)."""

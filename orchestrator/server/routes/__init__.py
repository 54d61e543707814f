"""API routes, one module per area; each reads and writes through ``orchestrator.services``."""

"""`moeplan serve`: the planner as an HTTP service (FastAPI) with a web calculator, for a team (docs/service.md).

Modules: `settings` (limits and options), `db` (the service's tables in the study database: plan cache,
leases, jobs), `api` (request models and limits over the Python API), `jobs` (fits and frontiers run by
any worker, under a lease), `app` (routes, errors, auth, logs), `page/` (the calculator: static files).
"""

"""Benchmarks of the artifact gateway: ``python -m loadtests.run`` (see loadtests/README.md).

The suite starts its own Postgres and SeaweedFS, runs ``artifact-gateway serve``
as a subprocess, and measures each workload through the gateway side by side
with the same workload sent straight to SeaweedFS (and, where installed, through
MLflow's artifact proxy), reporting ratios against the targets listed in loadtests/README.md.
"""

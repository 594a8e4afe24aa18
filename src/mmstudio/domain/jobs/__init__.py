"""The generic job system: durable rows, leases, resume by upstream handle. Knows nothing about video."""

"""Control: the `/__emulator__/` plane (stubs, faults, scopes, request log, clock, dashboard)."""

"""Launch: starting and stopping servers (foreground, detached, forked workers, a thread for tests)."""

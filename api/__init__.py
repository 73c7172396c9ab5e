"""The Litestar application, the CLI and the demo seed: the only layer that knows HTTP."""

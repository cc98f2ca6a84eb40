"""The control plane: the supervisor and everything that knows processes, not packets."""

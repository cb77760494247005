"""Kernel builds, targets that run programs, the guest executor and crash triage."""

"""Interop tests: the stack and the lab against the Linux kernel's TCP in network namespaces."""

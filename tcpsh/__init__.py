"""tcpsh: the shell that drives the stack."""

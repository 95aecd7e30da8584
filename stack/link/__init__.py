"""How segments reach the wire: the raw link (raw IP out, AF_PACKET in) and, for tests, a memory link."""

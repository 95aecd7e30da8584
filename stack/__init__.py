"""A user-space TCP/IP stack: wire codecs, a sans-I/O TCP core, links, the pool and its threads."""

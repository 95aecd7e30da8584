"""tcpsh's benchmark (`make bench`, `python -m bench`): the user-space stack beside Linux's TCP.

bench.run builds the labs and runs the measurements of bench.measure, bench.peer is Linux's side of
them (run inside the labs' namespaces), bench.report prints the table and writes the files, and
bench.profile profiles the stack's threads. docs/benchmarks.md says what each figure means.
"""

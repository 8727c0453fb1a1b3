"""The pure core: manifest text -> manifests -> desired keys -> plan -> transactions.

Purely computational: no I/O, no clock, no logging. Everything here is a function of its arguments,
which is what lets the planner be tested exhaustively and its output trusted in a dry run.
"""

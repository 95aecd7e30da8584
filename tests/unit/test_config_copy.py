"""TcbConfig.copy: each connection's own settings, equal to dataclasses.replace's copy and independent."""

from __future__ import annotations

import dataclasses

from stack.tcp import TcbConfig


def test_a_copy_is_equal_field_by_field_and_independent():
    cfg = TcbConfig.full(mtu=9000, cc="cubic", rto_min=0.2, keepalive=True, dscp=46, backlog=7)
    copy = cfg.copy()
    assert copy == dataclasses.replace(cfg) and copy is not cfg
    for f in dataclasses.fields(TcbConfig):
        assert getattr(copy, f.name) == getattr(cfg, f.name), f.name
    copy.set("rto-min", "0.5")
    assert cfg.rto_min == 0.2


def test_every_field_is_a_positional_parameter_in_field_order():
    """copy() passes the values in the order of the fields: that holds while every field is an init
    field that is not keyword-only."""
    assert all(f.init and not f.kw_only for f in dataclasses.fields(TcbConfig))

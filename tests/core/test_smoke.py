from stack.tcp import EventKind, State
from tests.core.net import connected


def test_handshake_data_and_active_close():
    net = connected(codec=False)
    net.take("a", net.a.tcb.send(b"hello", net.now))
    net.run_until(lambda: bytes(net.b.received) == b"hello")
    net.take("a", net.a.tcb.close(net.now))
    net.run_until(lambda: net.states() == (State.FIN_WAIT_2, State.CLOSE_WAIT))
    net.take("b", net.b.tcb.close(net.now))
    net.run_until(lambda: net.b.tcb.state is State.CLOSED and net.a.tcb.state is State.TIME_WAIT)
    net.run_until(lambda: net.a.tcb.state is State.CLOSED)
    assert EventKind.TIME_WAIT_OVER in net.a.kinds()


def test_simultaneous_close_goes_through_closing():
    net = connected(codec=False)
    net.take("a", net.a.tcb.close(net.now))
    net.take("b", net.b.tcb.close(net.now))
    assert net.states() == (State.FIN_WAIT_1, State.FIN_WAIT_1)
    net.run_until(lambda: net.states() == (State.TIME_WAIT, State.TIME_WAIT))
    net.run_until(lambda: net.states() == (State.CLOSED, State.CLOSED))

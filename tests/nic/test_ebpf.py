import os

import pytest

from framework.nic import ebpf, steer

from .test_synring import frames


def test_translated_programs_pass_the_verifier():
    for n in range(1, 9):
        for syn_queues in (False, True):
            fd = ebpf.load_steering(n, syn_queues)
            assert fd >= 0
            os.close(fd)
    # the translation keeps one eBPF entry per cBPF jump target and ends every path in exit
    insns = ebpf.translate(steer.fanout_program(4))
    assert insns[-1][0] == 0x05 | 0x90


@pytest.mark.parametrize("n", [1, 2, 3])
def test_the_loaded_program_sends_bare_syns_to_the_syn_queues(n):
    """The kernel's run of the translated program (BPF_PROG_TEST_RUN), the cBPF source and
    the Python twin agree: a bare SYN goes to queue n + shard_of, anything else (SYN-ACK,
    SYN+FIN, a fragment, UDP, ARP) to shard_of (non-IPv4: 0); without SYN queues all to
    shard_of."""
    for syn_queues in (False, True):
        prog = steer.queue_program(n, syn_queues)
        fd = ebpf.load_steering(n, syn_queues)
        try:
            for name, f, syn in frames():
                shard = steer.classify(f, n)
                want = 0 if shard == steer.NON_IP else shard + (n if syn and syn_queues else 0)
                assert steer.is_bare_syn(f) == syn, name
                assert steer.queue_of(f, n, syn_queues) == want, name
                assert steer.run_program(prog, f) == want, name
                assert ebpf.test_run(fd, f) == want, name
        finally:
            os.close(fd)

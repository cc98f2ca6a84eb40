import os

from framework.nic import ebpf, steer


def test_translated_programs_pass_the_verifier():
    for n in range(1, 9):
        fd = ebpf.load_steering(n)
        assert fd >= 0
        os.close(fd)
    # the translation keeps one eBPF entry per cBPF jump target and ends every path in exit
    insns = ebpf.translate(steer.fanout_program(4))
    assert insns[-1][0] == 0x05 | 0x90

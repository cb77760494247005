"""zcfuzz: a syscall fuzzer and ABI conformance suite for sendfile2 and SPLICE_F_ZC.

The checkout is the package: vm/ is zcfuzz.vm, conformance/ zcfuzz.conformance, fuzz/ zcfuzz.fuzz,
workflows/ zcfuzz.workflows and cli.py the command line (README, "Where things are").
"""

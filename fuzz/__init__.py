"""The fuzzer: strategies, oracles, stateful machine and campaigns for sendfile2 / SPLICE_F_ZC."""

"""The fuzzer: strategies, campaigns, findings and reproducers for sendfile2 / SPLICE_F_ZC; its
programs are judged by conformance's oracles."""

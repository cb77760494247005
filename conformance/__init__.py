"""The ABI of sendfile2 and SPLICE_F_ZC in one place: its values, its clauses, a model of a correct
kernel, the oracles that judge a program's result, and the suite that checks a kernel clause by
clause."""

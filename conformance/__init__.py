"""The ABI of sendfile2 and SPLICE_F_ZC as clauses, and the suite that checks a kernel against them."""

"""The revision workflows: gate, verdict, mutants, cover and bench drive kernel builds, conformance
and campaigns over whole revisions."""

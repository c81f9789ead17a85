"""`make mutate`: the README's promises broken one at a time, each of which named tests must catch.

mutations.py is the curated list (file, exact original snippet, replacement, the promise it breaks,
the tests that must fail); runner.py applies each to a scratch copy of the repository and runs only
those tests there. `python -m mutate --list`, `--only NAME`.
"""

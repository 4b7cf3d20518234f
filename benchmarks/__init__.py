"""Speed benchmarks: the framework's optimised paths against the naive reference paths, in one process.

``python -m benchmarks.run`` (``make bench``) measures both on the same model, data and hardware and
prints their ratio, so a speed-up is never a comparison across machines or runs. The naive paths live
in :mod:`benchmarks.reference`; the tests in ``tests/test_exactness.py`` check they compute the same
thing as the optimised ones.
"""

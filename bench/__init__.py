"""rocketman's benchmark suite: ``python -m bench`` from the repository's root.

Each figure of rocketman is measured beside a baseline in the same run (a
hand-written ``queue.Queue`` pool, ``ThreadPoolExecutor``, blinker, raw
redis-py, dramatiq, rq) and shown as a ratio, against the targets of the
project. See ``bench/README.md``. Nothing here is imported by the packages.
"""

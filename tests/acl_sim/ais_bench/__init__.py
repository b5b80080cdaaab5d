"""A simulator of ais_bench (Ascend's ait/msit benchmark Python API), for tests only; see ``infer/interface.py``."""

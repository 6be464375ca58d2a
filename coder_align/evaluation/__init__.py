"""Pieces of the evaluation stage (`coder_align/evaluate.py`): tasks, generation, scoring, report."""

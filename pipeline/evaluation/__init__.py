"""The eval suite: cases in, scores, gates and reports out.

cases (evals/cases/*.yaml) -> runner (draft each case, cached) -> score (gates and figures) -> report
(terminal, JSON, JUnit, Markdown); baseline (regressions against an earlier run), models (compare
endpoints), judge (a model's rubric scores, advisory).
"""

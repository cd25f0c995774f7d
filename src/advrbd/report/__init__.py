"""Reports: plots, tables and a self-contained HTML page (plus Markdown) for run and bench directories.

``write_report(dir)`` for a run (summary.json, samples.csv, evaluation.json, suspicious.npz) or a bench
(results.json); ``write_results_md`` / ``write_results_csv`` for the bench runner. Plot functions live in
``advrbd.report.plots`` (imported lazily: matplotlib is loaded only when a figure is drawn).
"""
from .html import write_report
from .tables import results_markdown, results_to_csv, write_results_csv, write_results_md

__all__ = ["write_report", "write_results_md", "write_results_csv", "results_to_csv", "results_markdown"]

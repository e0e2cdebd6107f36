"""The HTML run report: one self-contained file per run (issue 9).

* :mod:`components.report.tfma_reader`: the one reader of TFMA output
  (metrics with their confidence intervals, the confusion-matrix plot, the
  validation result) for the candidate and the baseline.
* :mod:`components.report.plots`: matplotlib (Agg) figures and inline PNGs.
* :mod:`components.report.build`: :class:`~components.report.build.ReportInputs`
  and :func:`~components.report.build.build_html` / ``write_report``.
* :mod:`components.report.examples`: counts of the run's photos and the
  misclassified gallery (the candidate SavedModel on the eval split).
* :mod:`components.report.pusher`: the ``report.html`` the pusher publishes.

Modules are imported on use: ``from components.report import build``.
"""

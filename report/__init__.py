"""The HTML run report: one self-contained file per run.

* :mod:`report.tfma_reader`: the one reader of TFMA output
  (metrics with their confidence intervals, the confusion-matrix plot, the
  validation result) for the candidate and the baseline.
* :mod:`report.plots`: matplotlib (Agg) figures and inline PNGs.
* :mod:`report.build`: :class:`~report.build.ReportInputs`
  and :func:`~report.build.build_html` / ``write_report``.
* :mod:`report.examples`: counts of the run's photos and the
  misclassified gallery (the candidate SavedModel on the eval split).
* :mod:`report.pusher`: the ``report.html`` the pusher publishes.

Modules are imported on use: ``from report import build``.
"""

"""ImportExampleGen over a window of spans: the latest, the last K, or a range.

TFX 1.16's ExampleGen reads exactly one span per execution: its input
processor (``tfx/components/example_gen/input_processor.py``) refuses a
``static_range`` whose start and end differ and a ``rolling_range`` of more
than one span. ``SpanWindowExampleGen`` is TFX's ImportExampleGen with two
small pieces swapped in, the driver and the executor, laid out as TFX lays
out its own ExampleGen (``tfx/components/example_gen/``):

* :mod:`components.example_gen.component`: ``SpanWindowExampleGen``;
* :mod:`components.example_gen.driver`: the drivers, which resolve the run's
  span window before the executor runs (local runs: ``Driver``; Kubeflow: the
  task's ``preCacheCheck``, ``python -m components.example_gen.driver``);
* :mod:`components.example_gen.executor`: the executor, which reads every
  span of the window, drops the unusable photos and writes plain TFRecords;
* :mod:`shelf_data.window`: the span window both resolve (the project's
  one resolver), with TFX's own matching and fingerprint for each span;
* :mod:`components.example_gen.record_check`: the executor's data-quality
  step, one input file at a time.
"""

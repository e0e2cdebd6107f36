"""ImportExampleGen over a window of spans: the latest, the last K, or a range.

TFX 1.16's ExampleGen reads one span per execution. ``SpanWindowExampleGen`` is TFX's ImportExampleGen with
its driver and executor swapped, laid out as TFX lays out its own ExampleGen:
:mod:`components.example_gen.component` (the component), :mod:`components.example_gen.driver` (resolves
the window before the executor runs, locally and as Kubeflow's ``preCacheCheck``),
:mod:`components.example_gen.executor` (reads every span, drops unusable photos, writes plain TFRecords)
and :mod:`components.example_gen.record_check` (its data-quality step); :mod:`shelf_data.window` is the
one resolver of the window.

See docs/running.md#which-spans-a-run-reads.
"""

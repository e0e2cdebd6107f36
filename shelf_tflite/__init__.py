"""TFLite models as the app receives them: built from the SavedModel, run, verified, with their metadata.

* :mod:`shelf_tflite.variants`: the variants and the push defaults (no TensorFlow import);
* :mod:`shelf_tflite.build`: one variant (``convert``) or several (``convert_many``);
* :mod:`shelf_tflite.convert`: the SavedModel, its TFLite converter and the gray variants' options;
* :mod:`shelf_tflite.tasks`: the ``tasks`` variant, for MediaPipe Tasks;
* :mod:`shelf_tflite.metadata`: the TFLite model metadata, written and read without TensorFlow;
* :mod:`shelf_tflite.runtime`: a model run as the handheld runs it, with LiteRT's interpreter;
* :mod:`shelf_tflite.verify`: a variant checked against the SavedModel and the budgets;
* :mod:`shelf_tflite.eval_data`: the Transform output examples that calibrate and verify.
"""
